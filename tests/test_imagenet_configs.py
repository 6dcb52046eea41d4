"""configs/alexnet.py and configs/googlenet.py through the command line, and
the model-input steps they rely on: upscaling grey digits, 10-crop scoring."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.data import prepare
from tests.helpers import read_jsonl, run_cli


@pytest.mark.parametrize('name,params', [
    # 10 classes, 67x67 input: conv5 leaves 1x1x256 for fc6.
    # Slow: test_alexnet_trains_on_ilsvrc_files_through_the_cli below keeps
    # AlexNet's run through the CLI in the default suite.
    pytest.param('alexnet', 20_209_034, marks=pytest.mark.slow),
    # 10 classes: 5,983,802 without aux heads; each aux head's fc sees the
    # 1x1x128 map of an 80x80 input: 208,010 (on 4a) + 210,058 (on 4d).
    # GoogLeNet's first compile alone takes a minute or two on 2 cores.
    pytest.param('googlenet', 6_401_870, marks=pytest.mark.slow),
])
def test_test_variant_trains_through_the_cli(tmp_path, mnist_data_dir, name,
                                              params):
  overrides = ['--config.num_epochs=1'] if name == 'googlenet' else []
  run_cli(f'--config=configs/{name}.py:mnist,test', f'--workdir={tmp_path}',
          f'--config.data.data_dir={mnist_data_dir}', *overrides)
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['num_params'] == params
  assert 0 <= results['test/accuracy'] <= 1
  assert 0 <= results['data_wait_share'] < 1
  logged = [r for r in read_jsonl(tmp_path / 'metrics.jsonl')
            if 'train/loss' in r]
  assert logged and all(np.isfinite(r['train/loss']) for r in logged)
  assert all(0 <= r['data_wait_share'] < 1 for r in logged)


def test_prepare_upscales_grey_digits_to_rgb():
  digits = np.zeros((2, 28, 28, 1), np.uint8)
  digits[0] = 255
  digits[1, 10:18, 10:18] = 255
  x = prepare.make_prepare(image_size=67, channels=3)(jnp.asarray(digits))
  assert x.shape == (2, 67, 67, 3) and x.dtype == jnp.float32
  np.testing.assert_allclose(x[0], 1.0, rtol=1e-6)  # flat stays flat
  np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey in every channel
  centre, corner = float(x[1, 33, 33, 0]), float(x[1, 0, 0, 0])
  assert centre == pytest.approx(1.0) and corner == 0.0
  # Stored size and channels pass unchanged when nothing is asked.
  same = prepare.make_prepare()(jnp.asarray(digits))
  assert same.shape == digits.shape


class Linear(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(7)(x.reshape((x.shape[0], -1)))


def test_ten_crop_scores_average_the_softmax():
  model = Linear()
  crops = jnp.asarray(np.random.default_rng(0).normal(size=(3, 10, 4, 4, 2)),
                      jnp.float32)
  params = model.init(jax.random.key(0), crops[:, 0])['params']
  got = prepare.crop_averaged_logits(model, {'params': params}, crops)
  per_crop = jax.nn.softmax(model.apply(
      {'params': params}, crops.reshape((30, 4, 4, 2))).reshape((3, 10, 7)),
                            axis=-1)
  assert got.shape == (3, 7)
  np.testing.assert_allclose(jnp.exp(got), per_crop.mean(1), rtol=1e-5)
  # Ten identical crops score as the single image does.
  same = jnp.repeat(crops[:, :1], 10, axis=1)
  np.testing.assert_allclose(
      prepare.crop_averaged_logits(model, {'params': params}, same),
      jax.nn.log_softmax(model.apply({'params': params}, crops[:, 0])),
      rtol=1e-5, atol=1e-6)


def test_alexnet_trains_on_ilsvrc_files_through_the_cli(tmp_path, ilsvrc_dirs):
  """configs/alexnet.py:test on a tiny ILSVRC2012 (the real tar layout,
  prepared by TFDS's builder): streamed, augmented, validated on the centre
  crop every epoch and on 10 crops at the end (config.evals)."""
  data_dir, manual_dir = ilsvrc_dirs
  args = ['--config=configs/alexnet.py:test', f'--workdir={tmp_path}',
          f'--config.data.data_dir={data_dir}',
          f'--config.data.manual_dir={manual_dir}']
  run_cli(*args)
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['data']['augment'] == 'alexnet'
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['step'] == 6  # 12 images, batch 4, 2 epochs
  assert results['num_params'] > 20_000_000  # 1000 classes
  # 5 validation images, each scored once (over its 10 crops at the end).
  for name in ('validation', 'validation_10crop'):
    assert results[f'{name}/accuracy'] in {i / 5 for i in range(6)}
  evaluated = lambda name: [r['step'] for r in read_jsonl(
      tmp_path / 'metrics.jsonl') if f'{name}/accuracy' in r]
  assert evaluated('validation') == [3, 6]  # every epoch
  assert evaluated('validation_10crop') == [6]  # at the end only
  assert 0 <= results['data_wait_share'] < 1
