"""Seeds trained together (config.seeds, research/replicas.py): through the
sweep command, each seed's metrics, results and files are those of the seed
run alone."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from research import configlib
from research import replicas
from research import stopwatch
from tests.helpers import REPO, load_config, read_jsonl, run_cli



def _sweep(workdir, data_dir, *flags):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.sweep',
       '--config=configs/mnist_nielsen.py:test', "--sweep=seed=0,1",
       f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _strip(rows):
  return [{k: v for k, v in r.items() if k not in stopwatch.TIMINGS}
          for r in rows]


@pytest.mark.slow  # 2 minutes on 2 cores
def test_vmapped_seeds_match_separate_runs(tmp_path, mnist_data_dir):
  alone, together = tmp_path / 'alone', tmp_path / 'together'
  _sweep(alone, mnist_data_dir)
  out = _sweep(together, mnist_data_dir, '--vmap_seeds')
  assert 'seeds vmapped' in out.stdout
  for seed in (0, 1):
    a = alone / f'seed={seed}'
    b = together / 'all' / f'seed={seed}'
    rows_a, rows_b = read_jsonl(a / 'metrics.jsonl'), read_jsonl(b / 'metrics.jsonl')
    assert [r['step'] for r in rows_a] == [r['step'] for r in rows_b]
    loss = lambda rows: [r['train/loss'] for r in rows if 'train/loss' in r]
    np.testing.assert_allclose(loss(rows_b), loss(rows_a), rtol=1e-6)
    results = [json.loads((d / 'results.json').read_text()) for d in (a, b)]
    for key in ('test/accuracy', 'validation/accuracy'):
      assert abs(results[0][key] - results[1][key]) <= 1e-3, (seed, key)
    np.testing.assert_allclose(results[1]['test/loss'],
                               results[0]['test/loss'], rtol=1e-5)
    # As if alone: the seed's own config, which a run of that seed alone
    # finds finished.
    config = json.loads((b / 'config.json').read_text())
    assert config['seed'] == seed and config['seeds'] == []
    again = run_cli('--config=configs/mnist_nielsen.py:test',
                    f'--config.seed={seed}', f'--workdir={b}',
                    f'--config.data.data_dir={mnist_data_dir}')
    assert 'nothing to do' in again.stderr
  # The seeds differ from each other: each has its own data order and init.
  firsts = [read_jsonl(together / 'all' / f'seed={s}' / 'metrics.jsonl')[0]
            ['train/loss'] for s in (0, 1)]
  assert len(set(firsts)) == 2
  table = (together / 'results.md').read_text()
  assert '| seed=0 | done |' in table


@pytest.mark.parametrize('key,value,says', [
    ('early_stopping.patience', 3, 'turn off early stopping'),
    ('optimizer.plateau.factor', 0.5, 'plateau schedule'),
    ('seeds', (0, 0), 'distinct integers'),
])
def test_what_seeds_together_cannot_do_is_refused(key, value, says):
  config = load_config('mnist_nielsen', 'test')
  config.seeds = (0, 1)
  configlib.override(config, key, value)
  with pytest.raises(configlib.ConfigError, match=says):
    replicas.validate(config)
