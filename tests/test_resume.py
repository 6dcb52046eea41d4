"""Killed after its first checkpoint, a rerun ends where an unbroken run ends."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from research import checkpoints
from tests.conftest import REPO, read_jsonl, run_cli


def test_killed_run_resumes_to_the_same_result(tmp_path, mnist_data_dir):
  args = ['--config=configs/mnist_nielsen.py:test',
          f'--config.data.data_dir={mnist_data_dir}',
          '--config.num_epochs=60', '--config.checkpoint_every_epochs=5',
          '--config.eval_every_epochs=5']
  whole, broken = tmp_path / 'whole', tmp_path / 'broken'
  run_cli(*args, f'--workdir={whole}')

  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.Popen([sys.executable, '-m', 'research.main', *args,
                           f'--workdir={broken}'], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (broken / 'checkpoints' / '1000').is_dir():
    assert proc.poll() is None and time.time() < deadline, 'no checkpoint'
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL
  assert not (broken / 'results.json').exists(), 'the run ended before the kill'

  rerun = run_cli(*args, f'--workdir={broken}')
  assert 'Resumed from the checkpoint at step' in rerun.stderr
  results = [json.loads((d / 'results.json').read_text()) for d in (whole, broken)]
  for key in ('test/accuracy', 'test/loss', 'validation/accuracy', 'step'):
    assert results[0][key] == results[1][key], key
  params = [checkpoints.load_latest(d)[0]['params'] for d in (whole, broken)]
  for a, b in zip(*(sorted(_leaves(p)) for p in params)):
    np.testing.assert_array_equal(a[1], b[1])
  strip = lambda rows: [{k: v for k, v in r.items() if k != 'examples_per_second'}
                        for r in rows]
  assert (strip(read_jsonl(whole / 'metrics.jsonl'))
          == strip(read_jsonl(broken / 'metrics.jsonl')))


def _leaves(tree, prefix=''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _leaves(value, f'{prefix}{key}/')
    else:
      yield f'{prefix}{key}', np.asarray(value)
