"""One device and eight simulated devices give the same run."""
import json

import numpy as np
import pytest

from tests.helpers import read_jsonl, run_cli


@pytest.mark.slow  # a minute
def test_eight_devices_match_one(tmp_path, mnist_data_dir):
  args = ['--config=configs/mnist_nielsen.py:test',
          f'--config.data.data_dir={mnist_data_dir}',
          '--config.batch_size=40', '--config.eval_batch_size=200',
          '--config.num_epochs=3', '--config.log_every_steps=10']
  runs = {}
  for devices in (1, 8):
    workdir = tmp_path / f'd{devices}'
    run_cli(*args, f'--workdir={workdir}', devices=devices)
    runs[devices] = (read_jsonl(workdir / 'metrics.jsonl'),
                     json.loads((workdir / 'results.json').read_text()))
  (rows1, res1), (rows8, res8) = runs[1], runs[8]
  assert res1['devices'] == 1 and res8['devices'] == 8
  assert [r['step'] for r in rows1] == [r['step'] for r in rows8]
  curve1 = [r['train/loss'] for r in rows1 if 'train/loss' in r]
  curve8 = [r['train/loss'] for r in rows8 if 'train/loss' in r]
  assert len(curve1) == 15
  np.testing.assert_allclose(curve8, curve1, rtol=1e-4)
  for key in ('test/accuracy', 'validation/accuracy', 'test/loss'):
    assert abs(res8[key] - res1[key]) <= 2e-3, key


def test_batch_that_does_not_divide_over_devices_is_refused(tmp_path):
  proc = run_cli('--config=configs/neuron.py', f'--workdir={tmp_path}',
                 '--config.batch_size=10', devices=8, check=False)
  assert proc.returncode != 0
  assert '--config.batch_size=8 or 16' in proc.stderr
  assert 'Traceback' not in proc.stderr
  # The refused run leaves no config.json, so the corrected command may run here.
  assert not (tmp_path / 'config.json').exists()
