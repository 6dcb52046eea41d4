"""research/models/fast_ops.py against the plain lax ops: values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from research.models import fast_ops


def _rand(rng, shape, scale=1.0):
  return jnp.asarray(rng.normal(size=shape).astype(np.float32) * scale)


def _check_conv(fast, plain, x, w, rtol=2e-5):
  rng = np.random.default_rng(1)
  y = plain(x, w)
  g = _rand(rng, y.shape)
  got_y, got_vjp = jax.vjp(fast, x, w)
  want_y, want_vjp = jax.vjp(plain, x, w)
  for got, want in zip((got_y, *got_vjp(g)), (want_y, *want_vjp(g))):
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                               atol=rtol * scale, rtol=0)


@pytest.mark.parametrize('x_shape,out', [((10, 784), 30), ((2, 3, 5), 4)])
def test_linear_has_lax_values_and_gradients(x_shape, out):
  rng = np.random.default_rng(0)
  x, w = _rand(rng, x_shape), _rand(rng, (out, x_shape[-1]), 0.1)
  plain = lambda x, w: lax.dot_general(x, w, (((x.ndim - 1,), (1,)), ((), ())))
  _check_conv(jax.jit(fast_ops.linear), jax.jit(plain), x, w)


@pytest.mark.parametrize('shape,k,padding', [
    ((2, 9, 10, 5), 1, ((0, 0), (0, 0))),   # 1x1: GoogLeNet's reductions
    ((2, 9, 10, 5), 1, 'SAME'),
    ((2, 9, 10, 5), 1, 'VALID'),
    ((2, 4, 4, 6), 5, 'SAME'),       # a map no larger than the kernel: the
    ((2, 3, 5, 2), 5, ((1, 2), (2, 0))),    # 11-layer net's 8th layer
    ((2, 3, 3, 3), 3, 'SAME'),
])
def test_convolutions_the_hook_runs_as_one_matmul(shape, k, padding):
  rng = np.random.default_rng(0)
  x, w = _rand(rng, shape), _rand(rng, (k, k, shape[-1], 4), 0.1)
  conv = lambda op: lambda x, w: op(x, w, (1, 1), padding,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  fast, plain = conv(fast_ops.conv_general_dilated), conv(lax.conv_general_dilated)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, w: fast(x, w).sum(),
                                      (0, 1)))(x, w))
  assert 'dot_general' in jaxpr and 'conv_general_dilated' not in jaxpr
  _check_conv(jax.jit(fast), jax.jit(plain), x, w)


@pytest.mark.parametrize('shape,k,padding', [
    ((2, 54, 54, 3), 5, 'SAME'),     # the street-number nets' first layer
    ((2, 27, 27, 6), 5, ((2, 2), (2, 2))),  # their second: odd maps
    ((2, 9, 12, 1), 7, 'SAME'),      # another odd kernel, uneven map
])
def test_space_to_depth_conv_has_lax_values_and_gradients(shape, k, padding):
  rng = np.random.default_rng(0)
  x, w = _rand(rng, shape), _rand(rng, (k, k, shape[-1], 5), 0.1)
  conv = lambda op: lambda x, w: op(x, w, (1, 1), padding,
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  fast, plain = conv(fast_ops.conv_general_dilated), conv(lax.conv_general_dilated)
  # It is the blocked convolution: 4x the input channels.
  [conv_eqn] = [e for e in jax.make_jaxpr(fast)(x, w).jaxpr.eqns
                if e.primitive.name == 'conv_general_dilated']
  assert conv_eqn.invars[0].aval.shape[-1] == 4 * shape[-1]
  _check_conv(jax.jit(fast), jax.jit(plain), x, w)


@pytest.mark.parametrize('shape,window', [
    ((2, 4, 4, 5), 5),   # the 11-layer net's locally connected layer
    ((2, 3, 3, 2), 3),
    ((2, 6, 5, 2), 3),   # a larger map: lax's own
])
def test_conv_local_has_lax_values_and_gradients(shape, window):
  rng = np.random.default_rng(0)
  x = _rand(rng, shape)
  kernel = _rand(rng, shape[1:3] + (window * window * shape[-1], 3), 0.1)
  fast = lambda x, w: fast_ops.conv_local(x, w, (window, window), 'SAME')
  plain = lambda x, w: lax.conv_general_dilated_local(
      x, w, (1, 1), 'SAME', (window, window),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  jaxpr = str(jax.make_jaxpr(fast)(x, kernel))
  small = shape[1] * shape[2] <= window * window
  assert ('conv_general_dilated' in jaxpr) == (not small)
  _check_conv(jax.jit(fast), jax.jit(plain), x, kernel)


@pytest.mark.parametrize('k,stride,padding,cin', [
    (3, 1, 1, 3), (1, 2, 0, 3), (1, 1, 1, 3),
    (5, 1, 2, 8), (5, 2, 2, 3), (5, 1, 0, 3)])  # space-to-depth's bounds
def test_other_convolutions_stay_xla_convolutions(k, stride, padding, cin):
  x, w = jnp.zeros((2, 9, 9, cin)), jnp.zeros((k, k, cin, 4))
  jaxpr = str(jax.make_jaxpr(lambda x, w: fast_ops.conv_general_dilated(
      x, w, (stride, stride), [(padding, padding)] * 2,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w))
  assert 'conv_general_dilated' in jaxpr and 'dot_general' not in jaxpr
  assert 'transpose' not in jaxpr  # no space-to-depth


def test_other_backends_take_the_plain_ops(monkeypatch):
  monkeypatch.setattr(fast_ops, '_on_cpu', lambda: False)
  x, w = jnp.zeros((2, 9, 9, 3)), jnp.zeros((1, 1, 3, 4))
  jaxpr = str(jax.make_jaxpr(lambda x, w: fast_ops.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w))
  assert 'conv_general_dilated' in jaxpr and 'dot_general' not in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda x: fast_ops.max_pool(x, (3, 3), (2, 2)))(x))
  assert 'reduce_window_max' in jaxpr and 'custom_vjp' not in jaxpr
  jaxpr = str(jax.make_jaxpr(fast_ops.linear)(jnp.zeros((2, 3)), jnp.zeros((4, 3))))
  assert 'dot_general' in jaxpr and 'custom_vjp' not in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda x: fast_ops.maxout(x, 3))(x))
  assert 'reduce_max' in jaxpr and 'custom_vjp' not in jaxpr
  blocks = fast_ops.space_to_depth(jnp.zeros((2, 8, 8, 6)))
  jaxpr = str(jax.make_jaxpr(lambda x: fast_ops.blocked_maxout_pool(x, 3))(
      blocks))
  assert 'reduce_max' in jaxpr and 'custom_vjp' not in jaxpr
  assert not fast_ops.blocked_layout_applies((2, 54, 54, 3), 5, 2)


def test_flax_conv_hook_keeps_parameters_and_values():
  x = _rand(np.random.default_rng(0), (2, 15, 15, 3))
  plain = nn.Conv(4, (1, 1))
  fast = nn.Conv(4, (1, 1), conv_general_dilated=fast_ops.conv_general_dilated)
  params = plain.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, fast.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, params))
  loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply(p, x)))
  got, want = jax.grad(loss(fast))(params), jax.grad(loss(plain))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-5), got, want)


@pytest.mark.parametrize('shape,window,stride,padding', [
    ((2, 15, 15, 3), 3, 2, 'VALID'),   # AlexNet
    ((2, 14, 14, 3), 3, 2, 'SAME'),    # GoogLeNet, stride 2
    ((2, 7, 7, 3), 3, 1, 'SAME'),      # GoogLeNet inception pool branch
    ((2, 9, 8, 2), 2, 2, ((0, 1), (1, 0))),
])
def test_max_pool_matches_flax_including_ties(shape, window, stride, padding):
  rng = np.random.default_rng(0)
  # Small integers: many ties inside windows, where the gradient must pick the
  # same element (the first maximum) as select_and_scatter.
  x = jnp.asarray(rng.integers(0, 4, shape).astype(np.float32))
  args = ((window, window), (stride, stride), padding)
  plain = lambda x: nn.max_pool(x, *args)
  fast = lambda x: fast_ops.max_pool(x, *args)
  y, vjp = jax.vjp(jax.jit(fast), x)
  want_y, want_vjp = jax.vjp(jax.jit(plain), x)
  g = _rand(rng, y.shape)
  np.testing.assert_array_equal(y, want_y)
  np.testing.assert_allclose(vjp(g)[0], want_vjp(g)[0], rtol=1e-6, atol=1e-6)



@pytest.mark.parametrize('ties', [False, True])
def test_maxout_matches_the_max_reduction(ties):
  """Values as the reduction; gradients too, and with ties (small integers)
  all of each unit's gradient goes to its first maximal piece."""
  rng = np.random.default_rng(0)
  x = (jnp.asarray(rng.integers(0, 3, (2, 5, 5, 12)).astype(np.float32))
       if ties else _rand(rng, (2, 5, 5, 12)))
  g = _rand(rng, (2, 5, 5, 4))
  parts = x.reshape(2, 5, 5, 4, 3)
  y, vjp = jax.vjp(jax.jit(lambda x: fast_ops.maxout(x, 3)), x)
  np.testing.assert_array_equal(y, parts.max(-1))
  first = jax.nn.one_hot(jnp.argmax(parts, -1), 3)  # argmax: the first maximum
  want = (first * g[..., None]).reshape(x.shape)
  np.testing.assert_array_equal(vjp(g)[0], want)
  if not ties:
    _, plain_vjp = jax.vjp(lambda x: x.reshape(2, 5, 5, 4, 3).max(-1), x)
    np.testing.assert_array_equal(vjp(g)[0], plain_vjp(g)[0])


@pytest.mark.parametrize('pieces', [1, 3])
@pytest.mark.parametrize('ties', [False, True])
def test_blocked_maxout_pool_is_maxout_then_the_pool(pieces, ties):
  """On 2x2 blocks, one maximum over a block's phases and a unit's pieces:
  the values of maxout then a 2x2 stride-2 pool, and the gradient of the two
  (first maximal phase, then first maximal piece), ties included."""
  rng = np.random.default_rng(0)
  shape = (2, 6, 8, 4 * pieces)
  x = (jnp.asarray(rng.integers(0, 3, shape).astype(np.float32))
       if ties else _rand(rng, shape))
  two_ops = lambda x: fast_ops.max_pool(
      fast_ops.maxout(x, pieces) if pieces > 1 else x, (2, 2), (2, 2), 'SAME')
  blocked = lambda x: fast_ops.blocked_maxout_pool(
      fast_ops.space_to_depth(x), pieces)
  y, vjp = jax.vjp(jax.jit(blocked), x)
  want_y, want_vjp = jax.vjp(jax.jit(two_ops), x)
  g = _rand(rng, y.shape)
  np.testing.assert_array_equal(y, want_y)
  np.testing.assert_array_equal(vjp(g)[0], want_vjp(g)[0])
  if ties:  # each output's gradient reaches exactly one input
    assert int(jnp.sum(vjp(jnp.ones_like(y))[0])) == y.size


def test_space_to_depth_round_trips():
  x = _rand(np.random.default_rng(0), (2, 6, 4, 3))
  blocks = fast_ops.space_to_depth(x)
  assert blocks.shape == (2, 3, 2, 2, 2, 3)
  np.testing.assert_array_equal(blocks[:, 1, 0, 1, 0], x[:, 3, 0])
  np.testing.assert_array_equal(fast_ops.depth_to_space(blocks), x)


@pytest.mark.parametrize('shape,window,stride', [
    ((2, 14, 14, 3), 5, 3),   # GoogLeNet's auxiliary heads: 14x14 -> 4x4
    ((2, 9, 11, 2), 2, 2),    # uneven: trailing rows no window covers
    ((2, 7, 7, 4), 7, 7),     # one window over the whole map
])
def test_avg_pool_matches_flax(shape, window, stride):
  rng = np.random.default_rng(0)
  x = _rand(rng, shape)
  plain = lambda x: nn.avg_pool(x, (window, window), strides=(stride, stride))
  fast = lambda x: fast_ops.avg_pool(x, window, stride)
  y, vjp = jax.vjp(jax.jit(fast), x)
  want_y, want_vjp = jax.vjp(jax.jit(plain), x)
  g = _rand(rng, y.shape)
  assert y.shape == want_y.shape
  np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vjp(g)[0], want_vjp(g)[0], rtol=1e-5, atol=1e-6)


def test_other_layouts_keep_their_string_padding():
  # NCHW/OIHW with 'SAME': padding must be worked out by lax for that layout.
  rng = np.random.default_rng(0)
  x, w = _rand(rng, (2, 3, 9, 11)), _rand(rng, (4, 3, 3, 5))
  conv = lambda op: op(x, w, (1, 1), 'SAME',
                       dimension_numbers=('NCHW', 'OIHW', 'NCHW'))
  np.testing.assert_array_equal(conv(fast_ops.conv_general_dilated),
                                conv(lax.conv_general_dilated))
