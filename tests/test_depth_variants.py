"""The options a CPU depth sweep changes (configs/street_numbers.py): each
changes what it says it changes, and a BatchNorm net trains, evaluates and
resumes through the real loop."""
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from research import checkpoints
from research import losses
from research import metrics
from research import models
from research import precise_bn
from research import steps
from research import train
from research.data import pipeline
from research.data import prepare
from research.models import layers
from research.models.street_numbers import StreetNumbers
from tests.helpers import load_config


def _config(arg='test'):
  return load_config('street_numbers', arg)


def _variables(model, size=32):
  return model.init(jax.random.key(0), jnp.zeros((4, size, size, 3)))


@pytest.mark.parametrize('norm', ['batch', 'layer', 'group'])
def test_norm_normalises_every_conv_and_dense_layer(norm):
  model = StreetNumbers(hidden_layers=9, width=0.125, dense_units=64,
                        dropout=0.0, norm=norm)
  variables = _variables(model)
  plain = _variables(model.clone(norm='none'))['params']
  layers = [k for k in plain if k.startswith(('conv', 'dense'))]
  for layer in layers:
    inner = 'conv' if layer.startswith('conv') else 'dense'
    assert 'bias' in plain[layer][inner]          # the paper's layers
    assert 'bias' not in variables['params'][layer][inner]  # the norm shifts
    assert set(variables['params'][layer]['norm'][norm]) == {'scale', 'bias'}
  assert ('batch_stats' in variables) == (norm == 'batch')
  # In training, BatchNorm's output has zero mean and unit variance per
  # channel over the batch (scale 1, shift 0 at initialisation).
  if norm == 'batch':
    x = jax.random.normal(jax.random.key(1), (16, 32, 32, 3)) * 5 + 3
    _, state = model.apply(variables, x, train=True,
                           mutable=['intermediates', 'batch_stats'])
    pre = state['intermediates']['conv3']['pre_relu'][0]
    np.testing.assert_allclose(pre.mean((0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(pre.std((0, 1, 2)), 1, atol=1e-2)


def test_no_norm_is_the_paper_net_unchanged():
  """norm='none' adds nothing: the params are those of a net without the
  field (a checkpoint of the paper's net still restores)."""
  variables = _variables(StreetNumbers(hidden_layers=5, width=0.125,
                                       dense_units=64))
  assert set(variables) == {'params'}
  assert not any('norm' in path for path in
                 traverse_util.flatten_dict(variables['params']))


def _units(model, size=54) -> list[int]:
  """Output units of each hidden layer, read off the params' shapes."""
  params = jax.eval_shape(lambda: _variables(model, size))['params']
  convs = [params[f'conv{i + 1}'] for i in range(len(model.conv_units()))]
  units = [next(iter(c.values()))['kernel'].shape[-1] for c in convs]
  units[0] //= model.maxout_pieces
  dense = [params[f'dense{i + 1}']['dense']['kernel'].shape
           for i in range(model.num_dense())]
  return units + [shape[-1] for shape in dense], dense[0][0]


def test_width_scales_every_layer():
  units, features = _units(StreetNumbers(hidden_layers=11, width=0.125))
  assert units == [6, 8, 16, 20, 24, 24, 24, 24, 24, 384, 384]
  assert features == 4 * 4 * 24


def test_small_map_width_widens_only_the_convolutions_on_small_maps():
  """At 54x54 the 6th convolution on read 7x7 or 4x4 maps; the layers
  before them and the dense layers keep `width`."""
  model = StreetNumbers(hidden_layers=11, width=0.125, small_map_width=0.5)
  units, features = _units(model)
  assert units == [6, 8, 16, 20, 24, 96, 96, 96, 96, 384, 384]
  assert features == 4 * 4 * 96  # what the dense layers are handed
  # At 16x16 the maps are small sooner: from the 4th convolution on (4x4).
  units, _ = _units(model, size=16)
  assert units[:9] == [6, 8, 16, 80, 96, 96, 96, 96, 96]


def test_crop_size_crops_then_the_model_sees_image_size(multidigit_data_dir):
  config = _config()
  config.data.data_dir = multidigit_data_dir
  config.data.crop_size, config.data.image_size = 54, 32
  train_data, evals = pipeline.create(config.data, 32, 32, seed=0)
  chunk = train_data.chunk(0, 2)
  assert chunk['image'].shape == (2, 32, 54, 54, 3)  # 54x54 crops of 64x64
  assert evals['test'].chunk['image'].shape[-3:] == (54, 54, 3)  # centre crop
  to_model = prepare.make_prepare(config.data.image_size)
  assert to_model(jnp.asarray(chunk['image'][0])).shape == (32, 32, 32, 3)
  # Without crop_size the crop is image_size, as before.
  config.data.crop_size = 0
  train_data, _ = pipeline.create(config.data, 32, 32, seed=0)
  assert train_data.chunk(0, 1)['image'].shape == (1, 32, 32, 32, 3)


@pytest.mark.slow  # a minute
def test_batchnorm_net_trains_evaluates_and_resumes(tmp_path,
                                                    multidigit_data_dir):
  """Running averages are learned, saved with the checkpoint and used in
  evaluation; a run resumed from its first checkpoint ends with the same
  params, batch statistics and metrics as the uninterrupted one."""
  config = _config()
  config.data.data_dir = multidigit_data_dir
  config.model.norm = 'batch'
  whole, resumed = tmp_path / 'whole', tmp_path / 'resumed'
  results = train.train_and_evaluate(config, whole)
  state, last = checkpoints.load_latest(whole)
  stats = state['batch_stats']
  # Moved off their initial values (mean 0, variance 1).
  print('largest |var - 1| of conv1:',
        np.abs(np.asarray(stats['conv1']['norm']['batch']['var']) - 1).max())
  assert np.abs(np.asarray(stats['conv1']['norm']['batch']['var']) - 1).max() > 0.1

  # Evaluation uses the saved running averages, and they matter.
  model = models.build(config.model)
  _, evals = pipeline.create(config.data, config.batch_size,
                             config.eval_batch_size, seed=0)
  batches = {k: jnp.asarray(v) for k, v in evals['test'].chunk.items()}
  eval_chunk = steps.make_eval_chunk(
      model, losses.get(config.loss), metrics.sequence_counts,
      prepare.make_prepare(subtract_image_mean=True))
  test_loss = lambda stats: metrics.finalize('test', jax.device_get(eval_chunk(
      {'params': state['params'], 'batch_stats': stats}, batches)))['test/loss']
  print(f'test loss: run {results["test/loss"]!r}, recomputed '
        f'{test_loss(stats)!r}')
  assert test_loss(stats) == pytest.approx(results['test/loss'], rel=1e-6)
  initial = jax.tree.map(lambda x: x, stats)
  for layer in initial.values():
    layer['norm']['batch'] = {'mean': jnp.zeros_like(layer['norm']['batch']['mean']),
                              'var': jnp.ones_like(layer['norm']['batch']['var'])}
  print(f'test loss with the initial statistics: {test_loss(initial)!r}')
  assert abs(test_loss(initial) - results['test/loss']) > 1e-3

  # Resume from the first epoch's checkpoint: the same end.
  shutil.copytree(whole, resumed)
  shutil.rmtree(resumed / 'checkpoints' / str(last))
  (resumed / 'results.json').unlink()
  train.train_and_evaluate(config, resumed)
  b, _ = checkpoints.load_latest(resumed)
  for key in ('params', 'batch_stats'):
    flat_a = traverse_util.flatten_dict(state[key], sep='/')
    flat_b = traverse_util.flatten_dict(b[key], sep='/')
    assert flat_a.keys() == flat_b.keys()
    for name in flat_a:
      np.testing.assert_array_equal(flat_a[name], flat_b[name], name)


def test_precise_bn_averages_each_batchs_own_statistics():
  """Over K batches: the mean of the batch means and of the (biased) batch
  variances, whatever running averages the variables held."""
  model = layers.Norm('batch')
  batches = {'image': jax.random.normal(jax.random.key(1), (3, 16, 5, 5, 4))
                      * jnp.arange(1.0, 5.0) + 2.0}
  variables = model.init(jax.random.key(0), batches['image'][0])
  variables = {**variables, 'batch_stats': jax.tree.map(
      lambda x: x + 7.0, variables['batch_stats'])}  # stale, far off
  got = precise_bn.make_recompute(model, prepare=lambda x: x)(variables,
                                                             batches)
  x = np.asarray(batches['image'], np.float64)
  np.testing.assert_allclose(got['batch']['mean'], x.mean((1, 2, 3)).mean(0),
                             rtol=1e-5)
  np.testing.assert_allclose(got['batch']['var'], x.var((1, 2, 3)).mean(0),
                             rtol=1e-5)


def test_precise_bn_evaluates_with_recomputed_statistics(tmp_path,
                                                         multidigit_data_dir):
  """A run with precise_bn_examples scores its last evaluation with the
  statistics of that many training images under the final weights, and
  saves the running averages it trained (a resume stays exact)."""
  config = _config('test,batchnorm')
  config.data.data_dir = multidigit_data_dir
  config.num_epochs = 1
  config.precise_bn_examples = 64
  results = train.train_and_evaluate(config, tmp_path)
  state, _ = checkpoints.load_latest(tmp_path)
  model = models.build(config.model)
  train_data, evals = pipeline.create(config.data, config.batch_size,
                                      config.eval_batch_size, seed=config.seed)
  to_model = prepare.from_config(config.data)
  recomputed = precise_bn.make_recompute(model, to_model)(
      {'params': state['params'], 'batch_stats': state['batch_stats']},
      {k: jnp.asarray(v) for k, v in train_data.chunk(0, 2).items()})
  eval_chunk = steps.make_eval_chunk(model, losses.get(config.loss),
                                     metrics.sequence_counts, to_model)
  test_loss = lambda stats: metrics.finalize('test', jax.device_get(eval_chunk(
      {'params': state['params'], 'batch_stats': stats},
      {k: jnp.asarray(v) for k, v in evals['test'].chunk.items()})))['test/loss']
  print(f'test loss: run {results["test/loss"]!r}, with recomputed '
        f'statistics {test_loss(recomputed)!r}, with the running averages '
        f'{test_loss(state["batch_stats"])!r}')
  # The same computation compiled into two programs: float32 sums may run
  # in another order, some 1e-7 relative each.
  assert test_loss(recomputed) == pytest.approx(results["test/loss"], rel=1e-5)
  assert abs(test_loss(state['batch_stats']) - results['test/loss']) > 1e-3
