"""AlexNet and GoogLeNet against their papers: parameter counts, every layer's
output shape, local response normalisation, initialisation, and the bfloat16
compute dtype."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from research import configlib
from research import models
from research.models import lrn


def shapes(model, size, collections=('params', 'intermediates')):
  """(logits, variables) as shapes only: nothing is computed."""
  return jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, size, size, 3)), mutable=list(collections)))


def count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def unbox(tree):
  """Strips flax's partitioning boxes. Not nn.unbox: under a context mesh
  that also applies their sharding, which shapes and host arrays refuse."""
  return jax.tree.map(lambda x: x.unbox(apply_constraint=False)
                      if isinstance(x, nn.Partitioned) else x, tree,
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))


@pytest.mark.parametrize('towers,expected', [(2, 60_965_224), (1, 62_378_344)])
def test_alexnet_parameter_count(towers, expected):
  _, variables = shapes(models.AlexNet(towers=towers), 227)
  assert count(variables['params']) == expected


def test_alexnet_layer_shapes_and_towers():
  logits, variables = shapes(models.AlexNet(), 227)
  assert logits.shape == (2, 1000)
  got = {k: v['relu'][0].shape[1:] for k, v in variables['intermediates'].items()}
  assert got == {'conv1': (55, 55, 96), 'conv2': (27, 27, 256),
                 'conv3': (13, 13, 384), 'conv4': (13, 13, 384),
                 'conv5': (13, 13, 256), 'fc6': (4096,), 'fc7': (4096,)}
  params = unbox(variables['params'])
  # Each tower sees half the channels: 5x5x48, 3x3x192 (paper, Figure 2); the
  # two towers' kernels are stacked on a leading axis.
  assert params['conv2']['towers']['kernel'].shape == (2, 5, 5, 48, 128)
  assert params['conv2']['towers']['bias'].shape == (2, 128)
  assert params['conv4']['towers']['kernel'].shape == (2, 3, 3, 192, 192)
  assert params['conv5']['towers']['kernel'].shape == (2, 3, 3, 192, 128)
  assert params['conv3']['conv']['kernel'].shape == (3, 3, 256, 384)


def test_alexnet_towers_are_split_over_the_model_axis():
  """Only the grouped layers' params carry a sharding, tower axis on 'model'
  (section 3.2: one tower per GPU); the rest are replicated."""
  _, variables = shapes(models.AlexNet(num_classes=10), 67, ('params',))
  specs = nn.get_partition_spec(variables['params'])
  split = {layer for layer, sub in specs.items()
           if any(spec != P() for spec in jax.tree.leaves(
               sub, is_leaf=lambda x: isinstance(x, P)))}
  assert split == {'conv2', 'conv4', 'conv5'}
  assert specs['conv4']['towers']['kernel'] == P('model', None, None, None,
                                                 None)
  assert specs['conv4']['towers']['bias'] == P('model', None)


def test_alexnet_initialisation_follows_section_5():
  params = unbox(models.AlexNet().init(
      jax.random.key(0), jnp.zeros((1, 227, 227, 3)))['params'])
  one = {'conv2', 'conv4', 'conv5', 'fc6', 'fc7'}
  for layer, sub in params.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
      name = path[-1].key
      if name == 'bias':
        assert np.all(np.asarray(leaf) == (1.0 if layer in one else 0.0)), layer
      elif leaf.size > 10_000:
        assert float(jnp.std(leaf)) == pytest.approx(0.01, rel=0.05), layer
  towers = params['conv4']['towers']['kernel']
  assert not np.allclose(towers[0], towers[1])  # drawn apart, not copies


def test_lrn_matches_the_paper_formula():
  a = np.random.default_rng(0).normal(size=(2, 3, 3, 9)).astype(np.float32) * 20
  got = np.asarray(lrn.local_response_norm(jnp.asarray(a)))
  want = np.empty_like(a)
  for i in range(9):
    window = a[..., max(0, i - 2):min(9, i + 3)]
    want[..., i] = a[..., i] / (2 + 1e-4 * np.sum(window**2, -1))**0.75
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('aux,expected', [(False, 6_998_552), (True, 13_378_280)])
def test_googlenet_parameter_count(aux, expected):
  _, variables = shapes(models.GoogLeNet(aux_heads=aux), 224)
  assert count(variables['params']) == expected


def test_googlenet_follows_table_1():
  logits, variables = shapes(models.GoogLeNet(), 224,
                             ('params', 'intermediates', 'aux_logits'))
  assert logits.shape == (2, 1000)
  out = {k.removeprefix('inception_'): v['output'][0].shape[1:]
         for k, v in variables['intermediates'].items() if k.startswith('inception')}
  assert out == {'3a': (28, 28, 256), '3b': (28, 28, 480), '4a': (14, 14, 512),
                 '4b': (14, 14, 512), '4c': (14, 14, 512), '4d': (14, 14, 528),
                 '4e': (14, 14, 832), '5a': (7, 7, 832), '5b': (7, 7, 1024)}
  assert variables['params']['inception_3a']['5x5']['conv']['kernel'].shape == (5, 5, 16, 32)
  assert {k: v[0].shape for k, v in variables['aux_logits'].items()} == {
      '4a': (2, 1000), '4d': (2, 1000)}


def test_googlenet_aux_heads_only_in_training():
  model = models.GoogLeNet(num_classes=10)
  x = jnp.zeros((1, 224, 224, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  apply = lambda train: jax.eval_shape(lambda p: model.apply(
      {'params': p}, x, train=train, mutable=['aux_logits'],
      rngs={'dropout': jax.random.key(1)}), params)[1]
  assert not apply(False)
  assert set(apply(True)['aux_logits']) == {'4a', '4d'}


def test_training_loss_adds_weighted_aux_losses():
  """The loss in training is main + weight * each sown auxiliary classifier's
  (GoogLeNet: 0.3, section 5), and evaluation ignores them."""
  import flax.linen as nn
  import optax
  from research import losses, mesh, steps

  class WithAux(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
      x = x.reshape((x.shape[0], -1))
      if train or self.is_initializing():
        self.sow('aux_logits', 'early', nn.Dense(3, name='aux')(x))
      return nn.Dense(3, name='main')(x)

  model, loss_fn = WithAux(), losses.get('softmax_cross_entropy')
  images = jnp.asarray(np.random.default_rng(0).random((1, 4, 5), np.float32))
  labels = jnp.array([[0, 1, 2, 1]], jnp.int32)
  new_state = lambda: steps.create_train_state(
      model, optax.sgd(0.0), jax.random.key(0), images[0, :1], mesh.make_mesh())
  params = new_state().params
  batches = {'image': images, 'label': labels}
  key = jax.random.key(1)
  loss = lambda weight: float(steps.make_train_chunk(model, loss_fn, weight)(
      new_state(), batches, key)[1][0])
  main = jnp.mean(loss_fn(model.apply({'params': params}, images[0]), labels[0]))
  aux = jnp.mean(loss_fn(images[0] @ params['aux']['kernel']
                         + params['aux']['bias'], labels[0]))
  assert loss(0.0) == pytest.approx(float(main), rel=1e-5)
  assert loss(0.3) == pytest.approx(float(main + 0.3 * aux), rel=1e-5)


def test_lrn_fast_path_equals_the_general_power():
  a = jnp.asarray(np.random.default_rng(1).normal(size=(4, 5, 16)) * 30,
                  jnp.float32)
  fast = lrn.local_response_norm(a, beta=0.75)
  general = lrn.local_response_norm(a, beta=0.7500001)  # takes jnp.power
  np.testing.assert_allclose(fast, general, rtol=1e-5)


def _params_like(model, size):
  """Random params of the model's shapes, without compiling its init (XLA
  takes minutes over GoogLeNet's on CPU): fan-in scaled normal kernels."""
  _, variables = shapes(model, size, ('params',))
  rng = np.random.default_rng(0)
  def draw(path, x):
    if path[-1].key == 'bias':
      return jnp.zeros(x.shape, x.dtype)
    fan_in = np.prod(x.shape[-4:-1] if x.ndim >= 4 else x.shape[:-1])
    return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(fan_in), x.dtype)
  return jax.tree_util.tree_map_with_path(draw, unbox(variables['params']))


@pytest.mark.parametrize('name,size', [('alexnet', 67), ('googlenet', 96)])
def test_bfloat16_computes_in_bfloat16_with_float32_params_and_logits(
    name, size):
  cls = models.REGISTRY[name]
  params = _params_like(cls(num_classes=10), size)
  x = jnp.asarray(np.random.default_rng(1).random((2, size, size, 3)),
                  jnp.float32)

  def forward(dtype):
    return jax.jit(lambda p: cls(num_classes=10, dtype=dtype).apply(
        {'params': p}, x, train=True, rngs={'dropout': jax.random.key(0)},
        mutable=['aux_logits', 'intermediates']))(params)

  (want, want_extra), (got, got_extra) = forward('float32'), forward('bfloat16')
  assert got.dtype == jnp.float32
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  # The arithmetic really ran in bfloat16 (the layers' sown activations).
  relu = jax.tree.leaves(got_extra['intermediates'])
  assert relu and all(a.dtype == jnp.bfloat16 for a in relu)
  scale = float(jnp.abs(want).max())
  np.testing.assert_allclose(got, want, atol=0.05 * scale)
  assert not np.array_equal(got, want)
  aux = jax.tree.leaves(got_extra.get('aux_logits', {}))
  assert len(aux) == (2 if name == 'googlenet' else 0)
  for a, b in zip(aux, jax.tree.leaves(want_extra.get('aux_logits', {}))):
    assert a.dtype == jnp.float32
    np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(b).max()))


def test_unknown_dtype_is_refused_with_the_nearest_name():
  with pytest.raises(configlib.ConfigError, match="Did you mean 'bfloat16'"):
    jax.eval_shape(lambda: models.AlexNet(num_classes=10, dtype='bfloat61').init(
        jax.random.key(0), jnp.zeros((1, 67, 67, 3))))


def test_lrn_in_bfloat16_sums_squares_in_float32():
  """Activations of a few hundred: with the float32 sum the result is within
  bfloat16 rounding of the float32 LRN (0.4% here); a bfloat16 sum of their
  squares was 1.3% off."""
  a = jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 3, 16)) * 300,
                  jnp.float32)
  got = lrn.local_response_norm(a.astype(jnp.bfloat16))
  assert got.dtype == jnp.bfloat16
  want = lrn.local_response_norm(a.astype(jnp.bfloat16).astype(jnp.float32))
  np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=8e-3)


@pytest.mark.parametrize('model', [models.AlexNet, models.GoogLeNet])
def test_unknown_weight_init_names_the_choices(model):
  from research import configlib
  with pytest.raises(configlib.ConfigError, match="Did you mean 'he'"):
    shapes(model(weight_init='hee'), 96)
