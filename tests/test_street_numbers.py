"""The street-number recognizer (Goodfellow et al. 2013): network shape,
the sequence loss, decoding, sequence metrics and coverage."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import losses
from research import metrics
from research.models import fast_ops
from research.models.street_numbers import ConvLayer
from research.models.street_numbers import LocalConv
from research.models.street_numbers import StreetNumbers


def _init(model, size=54, batch=2):
  """(params, outputs, intermediates) as shapes: nothing is computed."""
  def run(x):
    variables = model.init(jax.random.key(0), x)
    out, state = model.apply(variables, x, mutable=['intermediates'])
    return variables['params'], out, state['intermediates']
  return jax.eval_shape(run, jax.ShapeDtypeStruct((batch, size, size, 3),
                                                  jnp.float32))


def test_eleven_layers_follow_section_5_1():
  model = StreetNumbers(hidden_layers=11)
  assert model.conv_units() == [48, 64, 128, 160, 192, 192, 192, 192, 192]
  params, out, inter = _init(model)
  assert out['length'].shape == (2, 7) and out['digits'].shape == (2, 5, 10)
  # Maxout: 3 filters per unit in layer 1, 48 units out.
  assert params['conv1']['conv']['kernel'].shape == (5, 5, 3, 144)
  assert inter['conv1']['maxout'][0].shape == (2, 54, 54, 48)
  # 2x2 pools with strides 2, 1, 2, 1, ...: 54 -> 27 -> 27 -> 14 -> 14 -> 7 ...
  sizes = [inter[f'conv{i}']['relu'][0].shape[1] for i in range(2, 10)]
  assert sizes == [27, 27, 14, 14, 7, 7, 4, 4]
  # "eight convolutional hidden layers, one locally connected hidden layer,
  # and two densely connected hidden layers": the ninth has a 5x5x192 window
  # of weights of its own at each of the 4x4 positions, and no pool.
  kinds = [next(iter(params[f'conv{i}'])) for i in range(1, 10)]
  assert kinds == ['conv'] * 8 + ['local']
  assert params['conv9']['local']['kernel'].shape == (4, 4, 5 * 5 * 192, 192)
  assert params['dense1']['dense']['kernel'].shape == (4 * 4 * 192, 3072)
  assert params['dense2']['dense']['kernel'].shape == (3072, 3072)


def test_the_locally_connected_layer_tells_positions_apart():
  """The same window at two positions gives the same output through a
  convolution and different outputs through the locally connected layer."""
  x = jnp.zeros((1, 4, 4, 8)).at[0, 0, 0].set(1.0).at[0, 3, 3].set(1.0)
  for local, same in ((False, True), (True, False)):
    layer = ConvLayer(4, local=local)
    variables = layer.init(jax.random.key(0), x)
    y = layer.apply(variables, x)
    assert bool(jnp.allclose(y[0, 0, 0], y[0, 3, 3])) == same, local


@pytest.mark.parametrize('norm,pieces,tied', [
    ('none', 3, False), ('batch', 3, False), ('batch', 3, True),
    ('layer', 3, False), ('group', 3, False), ('batch', 1, False)])
def test_the_blocked_first_layer_computes_what_the_plain_one_does(
    norm, pieces, tied, monkeypatch):
  """On CPU the first layer (3 channels in, a stride-2 pool) keeps its maps
  in 2x2 blocks: the same outputs, sown activations, batch statistics and
  gradients as the layer computed map by map. Integer inputs and weights
  under norm 'none' make maxout and the pool break ties; so do, under
  BatchNorm (where training runs the normalisation, maxout and pool as one
  op with a gradient of its own), filters equal within each unit (`tied`)."""
  x = jax.random.randint(jax.random.key(1), (4, 10, 12, 3), -2, 3)
  layer = ConvLayer(4, pieces=pieces, norm=norm, pool_stride=2)
  variables = layer.init(jax.random.key(0), x.astype(jnp.float32))
  if norm == 'none':
    variables = jax.tree.map(lambda a: jnp.round(a * 2), variables)
  if tied:
    kernel = variables['params']['conv']['kernel'].reshape(5, 5, 3, 4, 3)
    variables['params']['conv']['kernel'] = jnp.repeat(
        kernel[..., :1], 3, -1).reshape(5, 5, 3, 12)
  fused = fast_ops.blocked_batchnorm_maxout_pool
  calls = []
  monkeypatch.setattr(fast_ops, 'blocked_batchnorm_maxout_pool',
                      lambda *a: calls.append(1) or fused(*a))

  def run(variables, x):
    def loss(variables, x):
      y, state = layer.apply(variables, x, train=True,
                             mutable=['intermediates', 'batch_stats'])
      return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), (
          y, state)
    return jax.grad(loss, argnums=(0, 1), has_aux=True)(variables, x)

  assert fast_ops.blocked_layout_applies(x.shape, 5, 2)
  blocked = run(variables, x.astype(jnp.float32))
  assert bool(calls) == (norm == 'batch' and pieces > 1)
  monkeypatch.setattr(fast_ops, 'blocked_layout_applies', lambda *a: False)
  plain = run(variables, x.astype(jnp.float32))
  assert jax.tree.structure(blocked) == jax.tree.structure(plain)
  for got, want in zip(jax.tree.leaves(blocked), jax.tree.leaves(plain)):
    scale = float(jnp.max(jnp.abs(want))) or 1.0
    np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize('use_bias', [True, False])
def test_local_conv_is_flax_conv_local(use_bias):
  """The locally connected layer keeps flax ConvLocal's parameters (names,
  shapes, initial values: checkpoints stay readable) and outputs."""
  x = jax.random.normal(jax.random.key(1), (3, 4, 4, 5))
  flax_layer = nn.ConvLocal(6, (5, 5), padding='SAME', use_bias=use_bias)
  ours = LocalConv(6, (5, 5), padding='SAME', use_bias=use_bias)
  variables = flax_layer.init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.key(0), x),
               variables)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # a nonzero bias
  np.testing.assert_allclose(ours.apply(variables, x),
                             flax_layer.apply(variables, x), atol=1e-5)


def test_a_shared_weight_ninth_layer_stays_selectable():
  params, _, _ = _init(StreetNumbers(hidden_layers=11, width=0.125,
                                     locally_connected=False))
  assert [next(iter(params[f'conv{i}'])) for i in range(1, 10)] == ['conv'] * 9


# Fig. 5's legend: 3-7 hidden layers have one fully connected layer, 8, 9
# and 11 two; the rest are convolutions (the 11-layer net's ninth standing for
# the paper's locally connected layer).
FIG5_LAYOUT = {3: (2, 1), 4: (3, 1), 5: (4, 1), 6: (5, 1), 7: (6, 1),
               8: (6, 2), 9: (7, 2), 10: (8, 2), 11: (9, 2)}


def _layers(params):
  return (sorted(k for k in params if k.startswith('conv')),
          sorted(k for k in params if k.startswith('dense')))


@pytest.mark.parametrize('depth', sorted(FIG5_LAYOUT))
def test_depth_is_laid_out_as_fig_5(depth):
  params, _, _ = _init(StreetNumbers(hidden_layers=depth, width=0.125,
                                     dense_units=64), size=32)
  convs, dense = _layers(params)
  assert (len(convs), len(dense)) == FIG5_LAYOUT[depth]
  assert convs == [f'conv{i}' for i in range(1, len(convs) + 1)]


def test_three_hidden_layers_are_two_convolutions_and_one_dense():
  params, _, inter = _init(StreetNumbers(hidden_layers=3))
  assert params['conv1']['conv']['kernel'].shape == (5, 5, 3, 144)  # maxout
  assert params['conv2']['conv']['kernel'].shape == (5, 5, 48, 64)
  # 54 -> pool /2 -> 27 -> pool /1 -> 27: the dense layer reads 27x27x64.
  assert inter['conv2']['relu'][0].shape == (2, 54 // 2, 54 // 2, 64)
  assert params['dense1']['dense']['kernel'].shape == (27 * 27 * 64, 3072)
  assert params['length']['kernel'].shape == (3072, 7)


def test_two_dense_layers_at_every_depth_stays_selectable():
  for depth in (3, 5, 8):
    params, _, _ = _init(StreetNumbers(hidden_layers=depth, dense_layers=2,
                                       width=0.25, dense_units=64), size=32)
    convs, dense = _layers(params)
    assert (len(convs), len(dense)) == (depth - 2, 2)


def test_too_shallow_for_the_dense_layers_is_refused():
  for model in (StreetNumbers(hidden_layers=1),
                StreetNumbers(hidden_layers=2, dense_layers=2)):
    with pytest.raises(ValueError, match='no convolution'):
      model.conv_units()


def test_per_digit_baseline_has_one_softmax():
  _, out, _ = _init(StreetNumbers(hidden_layers=4, width=0.25,
                                  dense_units=32, per_digit=True), size=32)
  assert out.shape == (2, 10)


def test_sequence_loss_is_length_plus_present_digits():
  rng = np.random.default_rng(0)
  logits = {'length': jnp.asarray(rng.normal(size=(2, 7)), jnp.float32),
            'digits': jnp.asarray(rng.normal(size=(2, 5, 10)), jnp.float32)}
  labels = jnp.asarray([[2, 4, 0, -1, -1, -1], [6, 1, 2, 3, 4, 5]])
  loss = losses.sequence_log_likelihood(logits, labels)
  lp_len = jax.nn.log_softmax(logits['length'])
  lp_dig = jax.nn.log_softmax(logits['digits'])
  want0 = -(lp_len[0, 2] + lp_dig[0, 0, 4] + lp_dig[0, 1, 0])
  want1 = -(lp_len[1, 6] + sum(lp_dig[1, i, i + 1] for i in range(5)))
  np.testing.assert_allclose(loss, [want0, want1], rtol=1e-5)
  # Absent digits get no gradient.
  grads = jax.grad(lambda lg: losses.sequence_log_likelihood(
      lg, labels).sum())(logits)
  assert np.all(grads['digits'][0, 2:] == 0)
  assert np.all(np.abs(grads['digits'][0, :2]).sum(-1) > 0)


def _onehot_logits(length, digits, margin=20.0):
  """Logits that make `length` and `digits` near certain."""
  return {'length': jax.nn.one_hot(jnp.asarray(length), 7) * margin,
          'digits': jax.nn.one_hot(jnp.asarray(digits), 10) * margin}


def test_decode_weighs_length_against_the_digits():
  # The length head prefers 3 digits a little, but the third digit head is
  # unsure (uniform): ln P(L=3) + 3 ln max P(S_i) loses to ln P(L=2) + two
  # certain digits.
  length = jnp.log(jnp.asarray([[1e-9, 1e-9, 0.45, 0.55, 1e-9, 1e-9, 1e-9]]))
  digits = jnp.zeros((1, 5, 10)).at[0, 0, 7].set(30).at[0, 1, 1].set(30)
  n, best, log_p = metrics.decode({'length': length, 'digits': digits})
  assert int(n[0]) == 2 and list(best[0, :2]) == [7, 1]
  np.testing.assert_allclose(log_p[0], np.log(0.45), atol=1e-3)
  # "More than 5" uses all five heads.
  n, _, _ = metrics.decode(_onehot_logits([6], [[1, 2, 3, 4, 5]]))
  assert int(n[0]) == 6


def test_sequence_counts_need_every_present_digit_and_the_length():
  labels = jnp.asarray([[2, 4, 7, -1, -1, -1],    # right
                        [2, 4, 7, -1, -1, -1],    # one digit wrong
                        [3, 1, 1, 1, -1, -1],     # length wrong, digits right
                        [1, 9, -1, -1, -1, -1]])  # padding row (masked)
  logits = _onehot_logits([2, 2, 2, 1],
                          [[4, 7, 0, 0, 0], [4, 8, 0, 0, 0],
                           [1, 1, 1, 0, 0], [3, 0, 0, 0, 0]])
  mask = jnp.asarray([True, True, True, False])
  sums = metrics.sequence_counts(logits, labels, mask,
                                 losses.sequence_log_likelihood(logits, labels))
  out = metrics.finalize('test', jax.device_get(sums))
  assert out['test/sequence_accuracy'] == pytest.approx(1 / 3)
  assert out['test/length_accuracy'] == pytest.approx(2 / 3)
  assert out['test/digit_accuracy'] == pytest.approx(6 / 7)


def test_coverage_keeps_the_most_confident_at_98_percent():
  total = np.zeros(10)
  right = np.zeros(10)
  total[9], right[9] = 50, 50   # most confident: all right
  total[5], right[5] = 30, 29   # 79/80 = 98.75%: still kept
  total[2], right[2] = 20, 10   # 89/100 < 98%: rejected
  assert metrics.coverage(total, right) == pytest.approx(0.8)
  assert metrics.coverage(total, np.zeros(10)) == 0.0


@pytest.mark.parametrize('arg,dataset,loss', [
    (None, 'svhn_full', 'sequence_log_likelihood'),
    ('mnist', 'mnist_multidigit', 'sequence_log_likelihood'),
    ('cropped', 'svhn_cropped', 'softmax_cross_entropy'),
])
def test_config_variants_are_valid(arg, dataset, loss):
  from configs import street_numbers
  from research import configlib
  from research import models
  config = street_numbers.get_config(arg)
  configlib.validate(config)
  assert (config.data.name, config.loss) == (dataset, loss)
  assert config.data.augment == 'random_crop'
  model = models.build(config.model)
  assert model.per_digit == (arg == 'cropped')
  assert config.model.hidden_layers == (8 if arg == 'cropped' else 11)
