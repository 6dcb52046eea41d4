"""Interrupted runs, rerun, end exactly where an uninterrupted run ends."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import orbax.checkpoint as ocp
from flax import traverse_util

from research import checkpoints
from research import stopwatch
from tests.helpers import REPO, read_jsonl

# Momentum, a plateau schedule and early stopping: a resume must restore the
# momentum, the learning-rate multiplier and both rules' counters, not only
# the params. min_delta=1 (a whole 100 points of accuracy) makes every
# evaluation after the first a non-improvement whatever the curve, so the
# counters run on every CPU: the rate halves at steps 3000, 5000, 7000 and
# 9000 (patience 2) and the run stops early at 9000 (patience 8).
ARGS = ['--config=configs/mnist_nielsen.py:test', '--config.num_epochs=60',
        '--config.checkpoint_every_epochs=5', '--config.eval_every_epochs=5',
        '--config.optimizer.name=momentum',
        '--config.optimizer.learning_rate=1.0',
        '--config.optimizer.plateau.factor=0.5',
        '--config.optimizer.plateau.patience=2',
        '--config.optimizer.plateau.min_delta=1.0',
        '--config.early_stopping.patience=8',
        '--config.early_stopping.min_delta=1.0']


def start(workdir, data_dir, *flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen(
      [sys.executable, '-m', 'research.main', *ARGS,
       f'--config.data.data_dir={data_dir}', f'--workdir={workdir}', *flags],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True)


def saved_counters(workdir, step: int) -> dict:
  """The loop state saved with checkpoint `step`: the stop rules' counters."""
  path = checkpoints.absolute(workdir) / 'checkpoints'
  with ocp.CheckpointManager(path) as manager:
    return manager.restore(step, args=ocp.args.Composite(
        loop=ocp.args.JsonRestore())).loop


def wait_for_first_checkpoint(proc, workdir):
  deadline = time.time() + 240
  while not (workdir / 'checkpoints' / '1000').is_dir():
    assert proc.poll() is None and time.time() < deadline, 'no checkpoint'
    time.sleep(0.005)




def assert_same_run(a, b, message=''):
  """Everything but the timings: results.json (the best evaluation and
  the early stop included), every metrics row and the final params."""
  results = [{k: v for k, v in json.loads((d / 'results.json').read_text())
              .items() if k not in stopwatch.TIMINGS} for d in (a, b)]
  assert results[0] == results[1], message
  params = [traverse_util.flatten_dict(checkpoints.load_latest(d)[0]['params'],
                                       sep='/') for d in (a, b)]
  assert params[0].keys() == params[1].keys()
  for name in params[0]:
    np.testing.assert_array_equal(params[0][name], params[1][name],
                                  f'{name} {message}')
  strip = lambda rows: [{k: v for k, v in r.items()
                         if k not in stopwatch.TIMINGS} for r in rows]
  assert strip(read_jsonl(a / 'metrics.jsonl')) == strip(
      read_jsonl(b / 'metrics.jsonl')), message


def test_sigkill_and_sigterm_runs_resume_to_identical_params(tmp_path,
                                                             mnist_data_dir):
  # Runs go on side by side (each spends most of its time starting), but each
  # interrupted run starts only once the test is free to watch it: a run
  # left alone would pass its first checkpoint unseen.
  whole, killed, termed, extended = (tmp_path / name for name in
                                     ('whole', 'killed', 'termed', 'extended'))
  uninterrupted = start(whole, mnist_data_dir)
  # A stop at a chosen step: the run ends at 30 epochs (step 6000), and is
  # continued to 60. Kills land where they land, around the first checkpoint;
  # at 6000 both rules are counting (asserted below), so a resume that lost
  # their counters or the best evaluation differs.
  first_half = start(extended, mnist_data_dir, '--config.num_epochs=30')

  # kill -9 at a random step after the first checkpoint: at most the steps
  # since the last checkpoint are lost.
  to_kill = start(killed, mnist_data_dir)
  wait_for_first_checkpoint(to_kill, killed)
  time.sleep(random.uniform(0, 0.3))
  to_kill.send_signal(signal.SIGKILL)
  assert to_kill.wait() == -signal.SIGKILL
  assert not (killed / 'results.json').exists(), 'the run ended before the kill'
  killed_rerun = start(killed, mnist_data_dir)

  # SIGTERM (a preemption): a checkpoint at the step it stopped, a clean exit.
  to_term = start(termed, mnist_data_dir)
  wait_for_first_checkpoint(to_term, termed)
  to_term.send_signal(signal.SIGTERM)
  _, stderr = to_term.communicate(timeout=120)
  assert to_term.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  assert 'Traceback' not in stderr
  stopped_at = int(re.search(r'Stopped by SIGTERM at step (\d+)', stderr)[1])
  assert (termed / 'checkpoints' / str(stopped_at)).is_dir()
  assert not (termed / 'results.json').exists()
  termed_rerun = start(termed, mnist_data_dir)

  assert first_half.wait(timeout=300) == 0, first_half.stderr.read()[-2000:]
  counters = saved_counters(extended, 6000)
  assert (counters['early_stopping']['waited'] > 0
          and counters['plateau']['waited'] > 0
          and counters['best']['step'] == 1000), (
              'The test needs both stop rules counting at step 6000; keep '
              'min_delta=1.0 and the patiences in ARGS so that no evaluation '
              f'after the first improves. Saved at 6000: {counters}')
  second_half = start(extended, mnist_data_dir, '--allow_config_change')

  procs = (killed_rerun, termed_rerun, second_half, uninterrupted)
  killed_log, termed_log, extended_log, whole_log = (
      p.communicate(timeout=300)[1] for p in procs)
  for proc, log in zip(procs, (killed_log, termed_log, extended_log,
                               whole_log)):
    assert proc.returncode == 0, log[-2000:]
  assert 'Resumed from the checkpoint at step' in killed_log
  assert f'Resumed from the checkpoint at step {stopped_at}' in termed_log
  assert 'Resumed from the checkpoint at step 6000' in extended_log
  assert_same_run(whole, killed)
  assert_same_run(whole, termed)
  assert_same_run(whole, extended)
  # The run exercised what it should: the rate was halved four times and
  # early stopping ended it, each at the step ARGS fix.
  rows = read_jsonl(whole / 'metrics.jsonl')
  rates = {r['step']: r['learning_rate'] for r in rows if 'learning_rate' in r}
  assert rates[3000] == 1.0 and rates[3100] == 0.5 and rates[9000] == 0.125
  results = json.loads((whole / 'results.json').read_text())
  assert results['stopped_early'] and results['step'] == 9000, results
  assert results['best']['step'] == 1000, results


def _scalars(workdir) -> dict:
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(str(workdir))
  accumulator.Reload()
  return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
          for tag in accumulator.Tags()['scalars'] if tag not in stopwatch.TIMINGS}


@pytest.mark.slow  # a minute of random kills
def test_sigkill_at_random_moments_changes_nothing(tmp_path, mnist_data_dir):
  """Killed again and again wherever it is (writing metrics, events or a
  checkpoint), rerun after each kill, the run ends as an uninterrupted one:
  metrics.jsonl, results.json, TensorBoard's scalars and the params."""
  whole, killed = tmp_path / 'whole', tmp_path / 'killed'
  start_time = time.time()
  proc = start(whole, mnist_data_dir)
  assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
  duration = time.time() - start_time
  seed = random.randrange(1 << 30)
  rng = random.Random(seed)
  for kill in range(4):
    proc = start(killed, mnist_data_dir)
    time.sleep(rng.uniform(0.3, duration))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  proc = start(killed, mnist_data_dir)
  assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
  message = f'random kill moments from seed {seed}'
  assert_same_run(whole, killed, message)
  got, want = _scalars(killed), _scalars(whole)
  assert got == want, message
