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


@pytest.mark.parametrize('size,c,k,o,stride,padding', [
    (13, 8, 3, 6, 1, 1),     # AlexNet conv3-5 kind
    (11, 5, 5, 4, 1, 2),     # conv2 kind
    (9, 4, 1, 7, 1, 0),      # 1x1: a matmul
    (27, 3, 11, 8, 4, 0),    # AlexNet conv1: space-to-depth
    (20, 3, 7, 5, 2, 'SAME'),  # GoogLeNet conv1: asymmetric SAME padding
    (10, 3, 4, 5, 3, 1),     # kernel a multiple of the stride
])
def test_conv_matches_lax(size, c, k, o, stride, padding):
  rng = np.random.default_rng(0)
  x = _rand(rng, (2, size, size + 1, c))
  w = _rand(rng, (k, k, c, o), 0.1)
  pads = padding if isinstance(padding, str) else [(padding, padding)] * 2
  plain = lambda x, w: lax.conv_general_dilated(
      x, w, (stride, stride), pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  fast = lambda x, w: fast_ops.conv_general_dilated(
      x, w, (stride, stride), pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  _check_conv(jax.jit(fast), jax.jit(plain), x, w)


def test_other_backends_take_the_plain_ops(monkeypatch):
  monkeypatch.setattr(fast_ops, '_on_cpu', lambda: False)
  x, w = jnp.zeros((2, 9, 9, 3)), jnp.zeros((3, 3, 3, 4))
  for stride in (1, 2):
    jaxpr = str(jax.make_jaxpr(lambda x, w: fast_ops.conv_general_dilated(
        x, w, (stride, stride), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC')))(x, w))
    assert 'conv_general_dilated' in jaxpr and 'custom_vjp' not in jaxpr
  jaxpr = str(jax.make_jaxpr(lambda x: fast_ops.max_pool(x, (3, 3), (2, 2)))(x))
  assert 'reduce_window_max' in jaxpr and 'custom_vjp' not in jaxpr


def test_flax_conv_hook_keeps_parameters_and_values():
  x = _rand(np.random.default_rng(0), (2, 15, 15, 3))
  plain = nn.Conv(4, (5, 5), strides=2, padding=1)
  fast = nn.Conv(4, (5, 5), strides=2, padding=1,
                 conv_general_dilated=fast_ops.conv_general_dilated)
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

