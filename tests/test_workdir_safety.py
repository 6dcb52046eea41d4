"""Nothing a run wrote is lost or mixed: one run per workdir, a rerun of a
finished run changes nothing, crash-safe metrics and TensorBoard events, and
Ctrl-C stops like SIGTERM."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from research import logs
from tests.helpers import REPO, read_jsonl, run_cli

ARGS = ['--config=configs/mnist_nielsen.py:test', '--config.num_epochs=60',
        '--config.checkpoint_every_epochs=5', '--config.eval_every_epochs=5']


def start(workdir, data_dir, *extra):
  """research.main in its own session (so SIGINT reaches it as a terminal's
  Ctrl-C would, not ignored as by a background job)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen(
      [sys.executable, '-m', 'research.main', *ARGS,
       f'--config.data.data_dir={data_dir}', f'--workdir={workdir}', *extra],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True, start_new_session=True)


def snapshot(workdir) -> dict:
  """{relative path: bytes} of everything a run wrote (the lock aside)."""
  return {str(p.relative_to(workdir)): p.read_bytes()
          for p in sorted(workdir.rglob('*'))
          if p.is_file() and p.name != '.lock'}


def scalars(workdir) -> dict:
  """{tag: [(step, value)]} as TensorBoard's own reader sees them."""
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(str(workdir))
  accumulator.Reload()
  return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
          for tag in accumulator.Tags()['scalars']}


def wait_for(predicate, proc, timeout=240):
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    assert time.time() < deadline
    time.sleep(0.01)


def test_two_runs_on_one_workdir_one_refuses_naming_the_holder(
    tmp_path, mnist_data_dir):
  alone, shared = tmp_path / 'alone', tmp_path / 'shared'
  run_cli(*ARGS, f'--config.data.data_dir={mnist_data_dir}',
          f'--workdir={alone}')
  first = start(shared, mnist_data_dir)
  second = start(shared, mnist_data_dir, '--config.seed=1')
  outputs = [p.communicate(timeout=300) for p in (first, second)]
  codes = [p.returncode for p in (first, second)]
  assert sorted(codes) == [0, 1], outputs
  refused = outputs[codes.index(1)][1]
  assert re.search(r'is in use by research\.main \(pid \d+ on .+, since '
                   r'\d{4}-\d\d-\d\dT', refused), refused[-2000:]
  assert 'Traceback' not in refused
  # The run that went ahead wrote exactly what a lone run writes.
  winner_seed = 0 if codes[0] == 0 else 1
  assert json.loads((shared / 'config.json').read_text())['seed'] == winner_seed
  if winner_seed == 0:
    strip = lambda rows: [{k: v for k, v in r.items() if k not in (
        'examples_per_second', 'data_wait_share')} for r in rows]
    assert strip(read_jsonl(shared / 'metrics.jsonl')) == strip(
        read_jsonl(alone / 'metrics.jsonl'))
  assert list(shared.glob('events.out.tfevents*')) == [
      shared / logs.EVENTS_NAME]


def test_a_killed_runs_lock_does_not_block_the_rerun(tmp_path, mnist_data_dir):
  proc = start(tmp_path, mnist_data_dir)
  wait_for(lambda: (tmp_path / 'checkpoints' / '1000').is_dir(), proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (tmp_path / '.lock').exists()  # left behind, but no longer held
  rerun = run_cli(*ARGS, f'--config.data.data_dir={mnist_data_dir}',
                  f'--workdir={tmp_path}')
  assert 'Resumed from the checkpoint at step' in rerun.stderr


def test_a_rerun_of_a_finished_run_changes_nothing(tmp_path, mnist_data_dir):
  args = [*ARGS, f'--config.data.data_dir={mnist_data_dir}',
          f'--workdir={tmp_path}']
  run_cli(*args)
  before = snapshot(tmp_path)
  results = json.loads(before['results.json'])
  assert results['examples_per_second'] > 0 and results['data_wait_share'] > 0
  again = run_cli(*args)
  assert 'nothing to do' in again.stderr
  assert snapshot(tmp_path) == before


def test_a_torn_last_line_is_dropped_and_the_cut_back_is_atomic(
    tmp_path, mnist_data_dir):
  args = [*ARGS, f'--config.data.data_dir={mnist_data_dir}']
  whole = tmp_path / 'whole'
  run_cli(*args, f'--workdir={whole}')
  torn = tmp_path / 'torn'
  proc = start(torn, mnist_data_dir)
  wait_for(lambda: (torn / 'checkpoints' / '2000').is_dir(), proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  # A crash mid-write: half a JSON line, and half a TensorBoard record.
  with open(torn / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 99999, "train/lo')
  with open(torn / logs.EVENTS_NAME, 'ab') as f:
    f.write(b'\x10\x00\x00\x00\x00\x00\x00\x00\x01\x02')
  rerun = run_cli(*args, f'--workdir={torn}')
  assert 'dropped a torn last line' in rerun.stderr
  assert 'Traceback' not in rerun.stderr
  strip = lambda rows: [{k: v for k, v in r.items() if k not in (
      'examples_per_second', 'data_wait_share')} for r in rows]
  assert strip(read_jsonl(torn / 'metrics.jsonl')) == strip(
      read_jsonl(whole / 'metrics.jsonl'))
  # TensorBoard's reader: one curve, the scalars an uninterrupted run has.
  got, want = scalars(torn), scalars(whole)
  assert set(got) == set(want) and 'train/loss' in got
  for tag in ('train/loss', 'test/accuracy', 'learning_rate'):
    assert got[tag] == want[tag], tag
  assert [s for s, _ in got['train/loss']] == sorted(
      {s for s, _ in got['train/loss']})  # each step once


@pytest.mark.parametrize('signum,code', [(signal.SIGINT, 130),
                                         (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_checkpoint_where_they_stop(tmp_path, mnist_data_dir,
                                                       signum, code):
  proc = start(tmp_path, mnist_data_dir)
  wait_for(lambda: (tmp_path / 'checkpoints' / '1000').is_dir(), proc)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == code, stderr[-2000:]
  assert 'Traceback' not in stderr
  name = signal.Signals(signum).name
  stopped = re.findall(rf'Stopped by {name} at step (\d+) and saved a '
                       'checkpoint there', stderr)
  assert len(stopped) == 1
  step = int(stopped[0])
  assert (tmp_path / 'checkpoints' / str(step)).is_dir()
  rows = read_jsonl(tmp_path / 'metrics.jsonl')
  assert max(r['step'] for r in rows) <= step
