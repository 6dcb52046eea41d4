"""The training loop on real data: what it learns, writes, and refuses."""
import json

import numpy as np
import pytest

from research import checkpoints
from research import configlib
from research import train
from tests.helpers import REPO, load_config, read_jsonl, run_cli


def test_neuron_learns_green_and_not_red(tmp_path):
  results = train.train_and_evaluate(load_config('neuron', 'test'), tmp_path)
  assert results['test/accuracy'] == 1.0
  state, _ = checkpoints.load_latest(tmp_path)
  unit = state['params']['unit']
  w, b = np.asarray(unit['kernel'])[0], float(unit['bias'][0])
  print('weighted input per state:', np.round(
      np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T @ w + b, 2))
  for green in (0, 1):
    for yellow in (0, 1):
      for red in (0, 1):
        fires = w @ np.array([green, yellow, red]) + b > 0
        assert fires == (green - red - 0.5 > 0), (green, yellow, red)


def test_mnist_steps_learn(tmp_path, mnist_data_dir):
  config = load_config('mnist_nielsen', 'test')
  config.data.data_dir = mnist_data_dir
  results = train.train_and_evaluate(config, tmp_path)
  losses = [r['train/loss'] for r in read_jsonl(tmp_path / 'metrics.jsonl')
            if 'train/loss' in r]
  print(f'loss {losses[0]:.4f} -> {losses[-1]:.4f}, '
        f'test accuracy {results["test/accuracy"]}')
  assert losses[-1] < 0.8 * losses[0]
  assert results['test/accuracy'] > 0.3  # chance is 0.1
  assert results['num_params'] == 23_860


def test_cli_writes_the_run_and_rerun_resumes(tmp_path, monkeypatch):
  workdir = tmp_path / 'run'
  # A relative --workdir, as in README, run from another directory.
  args = [f'--config={REPO}/configs/neuron.py:test', '--workdir=run']
  run_cli(*args, cwd=tmp_path)
  assert json.loads((workdir / 'config.json').read_text())['model']['name'] == 'neuron'
  rows = read_jsonl(workdir / 'metrics.jsonl')
  assert rows[-1]['step'] == 300 and 'test/accuracy' in rows[-1]
  assert list(workdir.glob('events.out.tfevents.*'))
  assert (workdir / 'checkpoints' / '300').is_dir()
  first = json.loads((workdir / 'results.json').read_text())
  again = run_cli(*args, cwd=tmp_path)
  # A finished run is left as it is (tests/test_workdir_safety.py checks
  # every byte).
  assert 'finished at step 300: nothing to do' in again.stderr
  second = json.loads((workdir / 'results.json').read_text())
  assert second['test/accuracy'] == first['test/accuracy']
  assert read_jsonl(workdir / 'metrics.jsonl') == rows
  monkeypatch.chdir(tmp_path)
  state, step = checkpoints.load_latest('run')
  assert step == 300 and state['params']['unit']['kernel'].shape == (1, 3)


def test_unknown_config_key_is_a_one_line_error(tmp_path):
  proc = run_cli('--config=configs/neuron.py', f'--workdir={tmp_path}',
                 '--config.optimizer.learning_rat=1', check=False)
  assert proc.returncode != 0
  assert 'Did you mean "learning_rate"' in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('key,value,flag', [
    ('num_epochs', -1, '--config.num_epochs'),
    ('batch_size', -4, '--config.batch_size'),
])
def test_out_of_range_values_are_refused(tmp_path, key, value, flag):
  config = load_config('neuron')
  config[key] = value
  with pytest.raises(configlib.ConfigError, match=flag):
    train.train_and_evaluate(config, tmp_path)


def test_negative_learning_rate_is_refused(tmp_path):
  config = load_config('neuron')
  config.optimizer.learning_rate = -0.1
  with pytest.raises(configlib.ConfigError, match='learning_rate'):
    train.train_and_evaluate(config, tmp_path)


def test_all_configs_load_and_build():
  from research import models
  for path in sorted((REPO / 'configs').glob('*.py')):
    if path.stem == 'common':  # blocks the configs share, not a config
      continue
    for arg in (None, 'test'):
      config = load_config(path.stem, arg)
      configlib.validate(config)
      models.build(config.model)


def test_one_step_per_call_trains_like_a_scanned_chunk(tmp_path):
  """steps_per_call=1 (how convolutional nets run: no while loop) and chunks of
  100 steps in one lax.scan give the same parameters."""
  params = []
  for steps_per_call in (1, 100):
    config = load_config('neuron', 'test')
    config.steps_per_call = steps_per_call
    workdir = tmp_path / str(steps_per_call)
    train.train_and_evaluate(config, workdir)
    params.append(checkpoints.load_latest(workdir)[0]['params']['unit'])
  for name in ('kernel', 'bias'):
    np.testing.assert_allclose(params[0][name], params[1][name], rtol=1e-6)


def test_allow_config_change_continues_through_the_cli(tmp_path):
  args = ['--config=configs/neuron.py:test', f'--workdir={tmp_path}']
  run_cli(*args)
  refused = run_cli(*args, '--config.num_epochs=400', check=False)
  assert refused.returncode != 0 and 'num_epochs: 300.0 -> 400.0' in refused.stderr
  went_on = run_cli(*args, '--config.num_epochs=400', '--allow_config_change')
  assert 'Continuing' in went_on.stderr and 'num_epochs: 300.0 -> 400.0' in went_on.stderr
  assert json.loads((tmp_path / 'config.json').read_text())['num_epochs'] == 400
  evals = [r['step'] for r in read_jsonl(tmp_path / 'metrics.jsonl')
           if 'test/accuracy' in r]
  assert evals[-1] == 400 and len(evals) == len(set(evals))  # each step once


def test_profile_traces_the_compiled_step_and_evals_and_saves_are_timed(
    tmp_path, mnist_data_dir):
  """--config.profile=N: a Perfetto trace in WORKDIR/profile of steps after
  compilation, naming the training chunk's compiled function; results.json
  and the progress line carry the evaluation and checkpoint seconds."""
  import gzip
  proc = run_cli('--config=configs/mnist_nielsen.py:test',
                 f'--config.data.data_dir={mnist_data_dir}', '--config.profile=50',
                 f'--workdir={tmp_path}')
  traces = list((tmp_path / 'profile').rglob('perfetto_trace.json.gz'))
  assert len(traces) == 1, list((tmp_path / 'profile').rglob('*'))
  trace = json.loads(gzip.decompress(traces[0].read_bytes()))
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  names = {e.get('name', '') for e in events}
  assert any('train_chunk' in n for n in names), sorted(names)[:50]
  # Compilation is not traced: XLA's compile passes would name themselves.
  assert not any('Compile' in n for n in names), [n for n in names if 'Compile' in n]
  results = json.loads((tmp_path / 'results.json').read_text())
  print({k: round(results[k], 3) for k in ('train_seconds', 'eval_seconds',
                                            'checkpoint_seconds')})
  assert results['eval_seconds'] > 0 and results['checkpoint_seconds'] > 0
  assert 'evals 0m' in proc.stderr and 'saves 0m' in proc.stderr
