"""Drop-in replacements for XLA ops that are slow on XLA's CPU backend.

Same functions and the same gradients up to float rounding (tests/test_fast_ops.py
checks values and gradients against the plain lax ops). Each op uses its
rewrite only on the CPU backend (`jax.default_backend() == 'cpu'`, read when the
function is traced); elsewhere it is the plain lax op, so GPU/TPU programs are
unchanged.

Why (AlexNet, batch 32, 2-core AMD EPYC, XLA CPU, jax 0.10; per-op timings from
isolated forward / input-gradient / weight-gradient jits):

- Convolution weight gradients. XLA CPU lowers dL/dW as a convolution of the
  input with the output gradient as a huge "kernel", which ran at 5-15 GFLOP/s
  (conv2: 0.7 s per tower against 0.06 s forward; GoogLeNet's 3x3 conv2 2.7 s
  against 0.26 s). The same sum, written as one matmul per kernel offset,
  dW[i, j] = x_shifted(i, j)^T dY (Eigen sgemm), is 3-7x faster. Forward and
  input gradient stay XLA's convolutions, which run near sgemm speed.
- Strided convolutions (AlexNet conv1 11x11/4, GoogLeNet conv1 7x7/2) with 3
  input channels: their weight gradient ran at ~10 GFLOP/s. Space-to-depth
  (s x s pixel blocks become channels; the kernel is zero-padded to a multiple
  of s) makes it a stride-1 sum over s*s*3 channels, then the matmuls above.
  (Space-to-depth for the forward too was slower than XLA's strided conv:
  x0.8 AlexNet conv1, x0.4 GoogLeNet conv1.)
- 1x1 stride-1 convolutions (most of GoogLeNet) are a matmul: weight gradient
  15x faster than XLA's.
- Max-pool backward. XLA CPU's select_and_scatter took 0.2-0.3 s for AlexNet's
  pool1 against 0.013 s forward. The backward here routes each output gradient
  to the first maximum of its window in row-major order (what
  select_and_scatter with `ge` does, so ties break identically) with shifted
  masks and pads that XLA fuses into elementwise loops.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _plain_conv(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                  dimension_numbers=_NHWC)


def _weight_grad_s1(x, g, kh, kw):
  """dL/dW of a stride-1, unpadded NHWC/HWIO convolution: for each kernel
  offset (i, j), (shifted input)^T (output gradient), a (B*H*W, C)^T (B*H*W, O)
  matmul."""
  b, ho, wo, o = g.shape
  c = x.shape[-1]
  g2 = g.reshape(-1, o)
  rows = []
  for i in range(kh):
    for j in range(kw):
      xs = lax.slice(x, (0, i, j, 0), (b, i + ho, j + wo, c)).reshape(-1, c)
      rows.append(lax.dot_general(xs, g2, (((0,), (0,)), ((), ())),
                                  preferred_element_type=g.dtype))
  return jnp.stack(rows).reshape(kh, kw, c, o)


def _weight_grad(x, g, kh, kw, stride, padding):
  """dL/dW of an NHWC/HWIO convolution. Stride s > 1 goes through
  space-to-depth: s x s pixel blocks become channels, so the kernel, zero-padded
  to whole blocks, slides with stride 1; the padded rows are cropped off."""
  (pt, pb), (pl, pr) = padding
  s = stride
  b, h, wd, c = x.shape
  _, ho, wo, o = g.shape
  kh2, kw2 = -(-kh // s), -(-kw // s)  # kernel size in blocks
  # Input rows/cols the blocked convolution reads: pad or crop the bottom/right
  # to exactly that (cropped ones are read by no output).
  hp, wp = (ho - 1 + kh2) * s, (wo - 1 + kw2) * s
  x = jnp.pad(x, ((0, 0), (pt, max(0, hp - h - pt)), (pl, max(0, wp - wd - pl)),
                  (0, 0)))[:, :hp, :wp]
  if s == 1:
    return _weight_grad_s1(x, g, kh, kw)
  x = x.reshape(b, hp // s, s, wp // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  # (XLA fuses this 6-D transpose into each offset's slice below, a gather
  # with 3-float runs; an optimization_barrier here did not stop that.)
  x = x.reshape(b, hp // s, wp // s, s * s * c)
  dw = _weight_grad_s1(x, g, kh2, kw2).reshape(kh2, kw2, s, s, c, o)
  dw = dw.transpose(0, 2, 1, 3, 4, 5).reshape(kh2 * s, kw2 * s, c, o)
  return dw[:kh, :kw]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, stride, padding):
  return _plain_conv(x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
  return _plain_conv(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, res, g):
  x, w = res
  _, input_grad = jax.vjp(lambda x: _plain_conv(x, w, stride, padding), x)
  (dx,) = input_grad(g)  # unused for a network's first layer: XLA drops it
  dw = _weight_grad(x, g, w.shape[0], w.shape[1], stride, padding)
  return dx, dw.astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x, w, stride: int = 1, padding=((0, 0), (0, 0))):
  """NHWC input, HWIO kernel, explicit padding ((top, bottom), (left, right)).

  On CPU: XLA's convolution forward and for the input gradient, matmuls for
  the weight gradient; 1x1 stride-1 convolutions are a matmul (all three
  products then are sgemm). Elsewhere lax.conv_general_dilated.
  """
  padding = tuple(tuple(int(v) for v in p) for p in padding)
  if not _on_cpu():
    return _plain_conv(x, w, stride, padding)
  kh, kw, c, o = w.shape
  if stride == 1 and kh == kw == 1 and padding == ((0, 0), (0, 0)):
    return lax.dot_general(x, w.reshape(c, o), (((3,), (0,)), ((), ())))
  return _conv(x, w, stride, padding)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """lax.conv_general_dilated's signature (flax nn.Conv's
  `conv_general_dilated=` hook): 2-D NHWC/HWIO convolutions with equal strides
  and no dilation or groups go to `conv2d`, everything else to lax."""
  plain = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if (not _on_cpu() or lhs.ndim != 4 or dn != nhwc
      or feature_group_count != 1 or batch_group_count != 1
      or any(d != 1 for d in (lhs_dilation or (1, 1)))
      or any(d != 1 for d in (rhs_dilation or (1, 1)))
      or len(set(window_strides)) != 1 or precision is not None
      or preferred_element_type is not None
      or lhs.dtype != rhs.dtype):
    return plain()
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2],
                                  window_strides, padding)
  return conv2d(lhs, rhs, window_strides[0], padding)


# ----------------------------------------------------------------------------
# Max pooling
# ----------------------------------------------------------------------------

def _pool_pads(shape, window, strides, padding):
  if isinstance(padding, str):
    return tuple(tuple(p) for p in
                 lax.padtype_to_pads(shape, window, strides, padding))
  return ((0, 0), *(tuple(p) for p in padding), (0, 0))


def _plain_max_pool(x, window, strides, pads):
  return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return _plain_max_pool(x, window, strides, pads)


def _max_pool_fwd(x, window, strides, pads):
  y = _plain_max_pool(x, window, strides, pads)
  return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
  """Each output's gradient goes to the first maximum of its window, window
  offsets taken in row-major order, as XLA's select_and_scatter (select `ge`)
  does for the gradient of reduce_window max."""
  x, y = res
  xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(lo, hi, 0) for lo, hi in pads])
  offsets = list(np.ndindex(*window))
  limits = [[o + s * (n - 1) + 1 for o, s, n in zip(offset, strides, y.shape)]
            for offset in offsets]
  # Index of the first maximum in each window, computed once (barrier: a
  # hint to materialise it). A first version carried a running 'taken' mask
  # through the nine terms; XLA fused that chain into the scatter and the
  # ReLU/LRN backward and recomputed it per term: AlexNet's whole step got
  # slower (x0.84) although the isolated pool backward was 3.5x faster.
  first = jnp.full(y.shape, len(offsets), jnp.int32)
  for k in reversed(range(len(offsets))):
    xs = lax.slice(xp, offsets[k], limits[k], strides)
    first = jnp.where(xs == y, k, first)
  first, g = lax.optimization_barrier((first, g))
  zero = jnp.zeros((), g.dtype)
  dxp = None
  for k, (offset, limit) in enumerate(zip(offsets, limits)):
    # Scatter the window's values back to their input positions: interior
    # padding spreads them `stride` apart, edge padding shifts them to `offset`.
    part = lax.pad(jnp.where(first == k, g, zero), zero, [
        (o, p - lim, s - 1) for o, lim, s, p in zip(offset, limit, strides,
                                                    xp.shape)])
    dxp = part if dxp is None else dxp + part
  dx = lax.slice(dxp, [lo for lo, _ in pads],
                 [lo + n for (lo, _), n in zip(pads, x.shape)])
  return (lax.optimization_barrier(dx),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window_shape, strides=None, padding='VALID'):
  """flax.linen.max_pool's signature for NHWC input: a 2-D max pool whose
  backward on CPU avoids select_and_scatter (see the module docstring)."""
  strides = tuple(strides or (1,) * len(window_shape))
  window = (1, *window_shape, 1)
  strides = (1, *strides, 1)
  pads = _pool_pads(x.shape, window, strides, padding)
  if not _on_cpu() or x.ndim != 4:
    return _plain_max_pool(x, window, strides, pads)
  return _max_pool(x, window, strides, pads)

