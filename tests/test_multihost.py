"""Two local processes (one CPU device each) train like one process."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, read_jsonl, run_cli

ARGS = ['--config=configs/mnist_nielsen.py:test', '--config.num_epochs=1',
        '--config.log_every_steps=50']


@pytest.mark.slow  # a minute on 2 cores
def test_two_processes_match_one(tmp_path, mnist_data_dir):
  data = f'--config.data.data_dir={mnist_data_dir}'
  single, multi = tmp_path / 'single', tmp_path / 'multi'
  run_cli(*ARGS, data, f'--workdir={single}', devices=2)
  # The launcher kills its processes at --timeout, so a hang fails this test;
  # the outer timeout is the last resort.
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.multihost_local', '--num_processes=2',
       '--timeout=240', *ARGS, data, f'--workdir={multi}'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  one, two = (json.loads((d / 'results.json').read_text()) for d in (single, multi))
  assert one['devices'] == two['devices'] == 2
  rows1, rows2 = read_jsonl(single / 'metrics.jsonl'), read_jsonl(multi / 'metrics.jsonl')
  assert [r['step'] for r in rows1] == [r['step'] for r in rows2]
  losses = lambda rows: [r['train/loss'] for r in rows if 'train/loss' in r]
  np.testing.assert_allclose(losses(rows2), losses(rows1), rtol=1e-5)
  for key in ('test/accuracy', 'validation/accuracy', 'test/loss'):
    assert abs(one[key] - two[key]) <= 1e-3, key
  second = (multi / 'process_1.log').read_text()
  assert not second.count('Traceback')
  # Each process read only its half of each MNIST split from the files.
  assert 'train: process 1 read rows 30000:60000 of 60000' in second
  assert 'test: process 1 read rows 5000:10000 of 10000' in second


def _children(pid: int) -> list[int]:
  out = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True,
                       text=True).stdout
  return [int(p) for p in out.split()]


@pytest.mark.slow  # 2 minutes on 2 cores
def test_sigterm_stops_both_processes_at_one_step_and_they_resume(
    tmp_path, mnist_data_dir):
  """SIGTERM to every process of a two-process run: all stop at the same
  step with one checkpoint; the rerun resumes across both and ends as one
  process with two devices does."""
  import signal
  import time
  args = ['--config=configs/mnist_nielsen.py:test', '--config.num_epochs=30',
          '--config.checkpoint_every_epochs=5', '--config.eval_every_epochs=5',
          f'--config.data.data_dir={mnist_data_dir}']
  single, multi = tmp_path / 'single', tmp_path / 'multi'
  launch = [sys.executable, '-m', 'launch.multihost_local',
            '--num_processes=2', '--timeout=240', *args, f'--workdir={multi}']
  proc = subprocess.Popen(launch, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 200
  while not (multi / 'checkpoints' / '1000').is_dir():
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.05)
  children = _children(proc.pid)
  assert len(children) == 2
  for pid in children:
    os.kill(pid, signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode != 0
  logs = out + (multi / 'process_1.log').read_text()
  steps = re.findall(r'Stopped by SIGTERM at step (\d+)', logs)
  assert len(steps) == 2 and steps[0] == steps[1], logs[-3000:]
  assert (multi / 'checkpoints' / steps[0]).is_dir()
  resumed = subprocess.run(launch, cwd=REPO, capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'Resumed from the checkpoint at step {steps[0]}' in resumed.stderr
  run_cli(*args, f'--workdir={single}', devices=2)
  rows1, rows2 = read_jsonl(single / 'metrics.jsonl'), read_jsonl(multi / 'metrics.jsonl')
  assert [r['step'] for r in rows1] == [r['step'] for r in rows2]
  losses = lambda rows: [r['train/loss'] for r in rows if 'train/loss' in r]
  np.testing.assert_allclose(losses(rows2), losses(rows1), rtol=1e-5)
