"""Drop-in replacements for XLA ops that are slow on XLA's CPU backend.

Same functions and the same gradients up to float rounding (tests/test_fast_ops.py
checks values and gradients against the plain lax ops). Each op uses its
rewrite only on the CPU backend (`jax.default_backend() == 'cpu'`, read when the
function is traced); elsewhere it is the plain lax op, so GPU/TPU programs are
unchanged.

Why: on XLA's CPU backend these ops ran on one core, or far from its
speed (the measurements are in results/README.md, 2026-11-23 and 2026-11-30):

- 1x1 stride-1 convolutions (most of GoogLeNet) are a matmul.
- Stride-1 SAME convolutions from fewer than 8 channels (the street-number
  nets' first two) run on 2x2 blocks, space-to-depth. Where a 2x2 stride-2
  max pool follows (their first layer), the layer's normalisation, maxout
  and pool stay in those blocks, maxout and pool as one maximum
  (`blocked_maxout_pool`): rearranging the 54x54 maps forward and backward
  cost more than the convolution. Under BatchNorm in training the
  normalisation joins them (`blocked_batchnorm_maxout_pool`), whose
  gradient is one pass over the layer's output where autodiff's took three.
- Convolutions on maps no larger than their kernel (the street-number
  nets' 4x4 layers, the locally connected one included) are one matmul.
- Max pooling: XLA CPU's select_and_scatter (the backward) was an order of
  magnitude slower than the forward. The backward here routes each output
  gradient to the first maximum of its window in row-major order (what
  select_and_scatter with `ge` does, so ties break identically) with shifted
  slices that XLA fuses into elementwise loops. The forward is the maximum
  of the window's shifted slices, one elementwise loop over both cores where
  reduce_window ran on one.
- Average pooling (GoogLeNet's auxiliary heads): two small matmuls with
  0/1 pooling matrices; reduce_window's backward ran on one core.
- Dense products (layers.Linear): the weight gradient as a product XLA CPU
  gives to YNNPACK rather than its own.

Other convolutions are XLA's own, forward and backward: with
research/xla_flags.py's Eigen convolutions, rewriting their weight gradients
as one matmul per kernel offset made AlexNet slower.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


# ----------------------------------------------------------------------------
# Dense product
# ----------------------------------------------------------------------------

def _linear(x, kernel):
  """x W^T: x (..., n_in), kernel (n_out, n_in)."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())))


@jax.custom_vjp
def _linear_cpu(x, kernel):
  return _linear(x, kernel)


def _linear_cpu_fwd(x, kernel):
  return _linear(x, kernel), (x, kernel)


def _linear_cpu_bwd(res, g):
  x, kernel = res
  dx = lax.dot_general(g, kernel, (((g.ndim - 1,), (0,)), ((), ())))
  g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
  # dW = g^T x. Left to itself XLA folds the transpose into the product,
  # which then contracts the rows of both operands: a form XLA CPU does not
  # hand to YNNPACK. The barrier keeps g^T a (n_out, batch) array of its own.
  dkernel = lax.dot_general(lax.optimization_barrier(g2.T), x2,
                            (((1,), (0,)), ((), ())))
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_linear_cpu.defvjp(_linear_cpu_fwd, _linear_cpu_bwd)


def linear(x, kernel):
  """x W^T for a kernel stored (n_out, n_in), as layers.Linear keeps it. On
  CPU the weight gradient runs as YNNPACK's product, faster than XLA's own
  for Nielsen's small mini-batches (results/README.md, 2026-11-30).
  Elsewhere plain autodiff."""
  return _linear_cpu(x, kernel) if _on_cpu() else _linear(x, kernel)


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------

_NHWC = ('NHWC', 'HWIO', 'NHWC')
# Space-to-depth below this many input channels: measured on one core for
# the street-number nets' 5x5 convolutions from 3 and 6 channels (2.4x and
# 2.6x faster forward); from 8 on, XLA's own ran as fast.
S2D_MAX_IN_CHANNELS = 7


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None,
                         feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """lax.conv_general_dilated's signature (flax nn.Conv's
  `conv_general_dilated=` hook). On CPU, for an NHWC/HWIO convolution at
  stride 1 without groups or dilation: a 1x1 unpadded kernel is a matmul
  (and so are its two gradients); a map of no more positions than the kernel
  is one matmul too (`dense_conv`); an odd kernel of 5 or more, SAME-padded,
  from fewer than 8 channels runs space-to-depth (`space_to_depth_conv`).
  Every other convolution is lax's."""
  simple = (
      _on_cpu() and lhs.ndim == 4
      and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
      == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
      and tuple(window_strides) == (1, 1)
      and feature_group_count == batch_group_count == 1
      and all(d == 1 for d in (lhs_dilation or (1, 1)))
      and all(d == 1 for d in (rhs_dilation or (1, 1)))
      and precision is None and preferred_element_type is None
      and lhs.dtype == rhs.dtype)
  if simple:
    kh, kw, cin, _ = rhs.shape
    pads = (lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), (1, 1), padding)
            if isinstance(padding, str) else padding)
    if (kh, kw) == (1, 1) and all(p == 0 for ps in pads for p in ps):
      return lax.dot_general(lhs, rhs.reshape(rhs.shape[2:]),
                             (((3,), (0,)), ((), ())))
    if covered_by_kernel(lhs.shape, (kh, kw)):
      return dense_conv(lhs, rhs, pads)
    if (_space_to_depth_suits(kh, kw, cin)
        and [tuple(p) for p in pads] == [(kh // 2, kh // 2)] * 2):
      return space_to_depth_conv(lhs, rhs)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


def _space_to_depth_suits(kh: int, kw: int, cin: int) -> bool:
  """Whether a SAME stride-1 kh x kw convolution from `cin` channels runs
  space-to-depth on CPU (`conv_general_dilated`)."""
  return kh == kw >= 5 and kh % 2 == 1 and cin <= S2D_MAX_IN_CHANNELS


def space_to_depth(x):
  """NHWC `x` of even height and width as (B, H/2, W/2, 2, 2, C): its 2x2
  blocks, phases (row, column) ahead of channels."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)


def depth_to_space(x):
  """`space_to_depth`'s inverse."""
  b, h, w, _, _, c = x.shape
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)


def _space_to_depth_kernel(w):
  """A k x k kernel (odd k, SAME padding k // 2) as the kernel of the same
  convolution on 2x2 blocks: (n, n, 4 cin, 4 cout), block phases (row,
  column) ahead of channels on both sides, zeros where a block offset and
  phase pair reaches outside the kernel; and the blocks' padding."""
  k, pad = w.shape[0], w.shape[0] // 2
  first, last = -((pad + 1) // 2), (k - pad) // 2  # block offsets read
  offsets = np.arange(first, last + 1)[:, None, None]
  phase_in, phase_out = np.arange(2)[None, :, None], np.arange(2)[None, None, :]
  # Kernel row read by (block offset, input phase, output phase); k: a zero.
  index = 2 * offsets + phase_in - phase_out + pad
  index = np.where((index >= 0) & (index < k), index, k)
  w = jnp.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))
  blocks = w[index[:, :, :, None, None, None], index[None, None, None]]
  # (by, py, oy, bx, px, ox, c, o) -> (by, bx, py, px, c, oy, ox, o)
  blocks = blocks.transpose(0, 3, 1, 4, 6, 2, 5, 7)
  n = last - first + 1
  return (blocks.reshape(n, n, 4 * w.shape[2], 4 * w.shape[3]),
          ((-first, last),) * 2)


def space_to_depth_conv(x, w):
  """A stride-1 SAME convolution of NHWC `x` by an odd k x k HWIO kernel,
  computed on 2x2 blocks: x as (B, H/2, W/2, 4C) convolved with the kernel
  rearranged into blocks (3x3 of them for k = 5) from 4C to 4 cout
  channels, and the output rearranged back. The same sums (for k = 5, 44%
  more multiplications, by zeros); XLA CPU's convolutions use a core far
  better with 12 input and 72 output channels than with 3 and 18
  (results/README.md, 2026-12-06)."""
  b, h, wd, c = x.shape
  hp, wp = h + h % 2, wd + wd % 2  # odd sizes: one zero row/column more
  x = space_to_depth(jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - wd), (0, 0))))
  kernel, pads = _space_to_depth_kernel(w)
  y = lax.conv_general_dilated(x.reshape(b, hp // 2, wp // 2, 4 * c), kernel,
                               (1, 1), pads, dimension_numbers=_NHWC)
  y = y.reshape(b, hp // 2, wp // 2, 2, 2, w.shape[3])
  return depth_to_space(y)[:, :h, :wd]


# ----------------------------------------------------------------------------
# Convolutions on maps no larger than their kernel
# ----------------------------------------------------------------------------

def covered_by_kernel(x_shape, kernel_shape) -> bool:
  """Whether NHWC input this shape has no more positions than a kernel of
  `kernel_shape` (height, width): then `dense_conv` does no more
  multiplications than the convolution."""
  return x_shape[1] * x_shape[2] <= kernel_shape[0] * kernel_shape[1]


def _taps(size: int, out: int, pad: int, k: int) -> np.ndarray:
  """(size, out): the kernel row through which input row i feeds output row
  p (stride 1, `pad` rows of zeros before the input); k where none does."""
  a = np.arange(size)[:, None] - np.arange(out)[None, :] + pad
  return np.where((a >= 0) & (a < k), a, k)


def dense_conv(x, kernel, pads, local: bool = False):
  """A stride-1 convolution of NHWC `x` as one matmul: x flattened, times the
  (H W C, H' W' O) matrix of what each input feeds each output. `kernel` is
  HWIO, or with `local` a locally connected layer's (H', W', C kh kw, O),
  input channel major, as `lax.conv_general_dilated_local` takes it (then
  `pads` and the kernel size are those of its windows). For maps no larger
  than the kernel (the street-number nets' last 4x4 layers), where XLA CPU's
  convolutions ran an order of magnitude below their FLOP count."""
  b, h, w, c = x.shape
  if local:
    oh, ow, _, o = kernel.shape
    kh, kw = (h + sum(pads[0]) - oh + 1, w + sum(pads[1]) - ow + 1)
    # (H', W', kh, kw, C, O): one (C, O) block per position and offset.
    kernel = kernel.reshape(oh, ow, c, kh, kw, o).transpose(0, 1, 3, 4, 2, 5)
  else:
    kh, kw, _, o = kernel.shape
    oh, ow = h + sum(pads[0]) - kh + 1, w + sum(pads[1]) - kw + 1
  rows = _taps(h, oh, pads[0][0], kh)[:, None, :, None]  # (H, 1, H', 1)
  cols = _taps(w, ow, pads[1][0], kw)[None, :, None, :]  # (1, W, 1, W')
  # A zero block at kernel offset (kh, kw), read where an input feeds no
  # output; the gather reads one (C, O) block per (input, output) pair.
  zero_at_end = [(0, 1) if axis in (-4, -3) else (0, 0) for axis in
                 range(-kernel.ndim, 0)]
  kernel = jnp.pad(kernel, zero_at_end)
  if local:
    out_rows = np.arange(oh)[None, None, :, None]
    out_cols = np.arange(ow)[None, None, None, :]
    blocks = kernel[out_rows, out_cols, rows, cols]
  else:
    blocks = kernel[rows, cols]
  matrix = blocks.transpose(0, 1, 4, 2, 3, 5)  # (H, W, C, H', W', O)
  y = x.reshape(b, h * w * c) @ matrix.reshape(h * w * c, oh * ow * o)
  return y.reshape(b, oh, ow, o)


def conv_local(x, kernel, filter_shape, padding):
  """lax.conv_general_dilated_local for NHWC `x` at stride 1 (flax
  ConvLocal's kernel layout); on CPU, on maps no larger than the window,
  `dense_conv`."""
  pads = (lax.padtype_to_pads(x.shape[1:3], filter_shape, (1, 1), padding)
          if isinstance(padding, str) else padding)
  if _on_cpu() and covered_by_kernel(x.shape, filter_shape):
    return dense_conv(x, kernel, [tuple(p) for p in pads], local=True)
  return lax.conv_general_dilated_local(
      x, kernel, (1, 1), pads, filter_shape, dimension_numbers=_NHWC)


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


def _window_offsets(window, strides, out_shape):
  """[(start, limit)] of the padded input's strided slice that each window
  offset reads, offsets in row-major order."""
  return [(offset, [o + s * (n - 1) + 1
                    for o, s, n in zip(offset, strides, out_shape)])
          for offset in np.ndindex(*window)]


def _pad(x, pads):
  """x padded with -inf, which no window's maximum can be."""
  return lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(lo, hi, 0) for lo, hi in pads])


def _slices_max_pool(x, window, strides, pads):
  """The max of the window's shifted slices: one elementwise loop that XLA
  splits over both cores, where XLA CPU's reduce_window ran on one."""
  xp = _pad(x, pads)
  out_shape = [(n - w) // s + 1 for n, w, s in zip(xp.shape, window, strides)]
  y = None
  for start, limit in _window_offsets(window, strides, out_shape):
    part = lax.slice(xp, start, limit, strides)
    y = part if y is None else jnp.maximum(y, part)
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
  return _slices_max_pool(x, window, strides, pads)


def _max_pool_fwd(x, window, strides, pads):
  y = _slices_max_pool(x, window, strides, pads)
  return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
  """Each output's gradient goes to the first maximum of its window, window
  offsets taken in row-major order, as XLA's select_and_scatter (select `ge`)
  does for the gradient of reduce_window max."""
  x, y = res
  xp = _pad(x, pads)
  offsets = _window_offsets(window, strides, y.shape)
  # Index of the first maximum in each window, computed once (barrier: a
  # hint to materialise it). A first version carried a running 'taken' mask
  # through the nine terms; XLA fused that chain into the scatter and the
  # ReLU/LRN backward and recomputed it per term: AlexNet's whole step got
  # slower although the isolated pool backward got faster.
  first = jnp.full(y.shape, len(offsets), jnp.int32)
  for k in reversed(range(len(offsets))):
    start, limit = offsets[k]
    first = jnp.where(lax.slice(xp, start, limit, strides) == y, k, first)
  first, g = lax.optimization_barrier((first, g))
  # Gather, one elementwise loop: spread `g` and `first` `stride` apart
  # (interior padding) with window - 1 zeros before, so that the input at
  # padded position p reads the window that starts at p - offset at index
  # p - offset + window - 1. (Scattering each offset's share with its own
  # pad wrote nine input-sized arrays, and was slower.)
  lo = [w - 1 for w in window]
  hi = [n - s * (m - 1) - 1 for n, s, m in zip(xp.shape, strides, y.shape)]
  spread = [(l, h, s - 1) for l, h, s in zip(lo, hi, strides)]
  g = lax.pad(g, jnp.zeros((), g.dtype), spread)
  first = lax.pad(first, jnp.array(-1, jnp.int32), spread)
  dxp = None
  for k, (offset, _) in enumerate(offsets):
    start = [l - o for l, o in zip(lo, offset)]
    limit = [a + n for a, n in zip(start, xp.shape)]
    part = jnp.where(lax.slice(first, start, limit) == k,
                     lax.slice(g, start, limit), 0)
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


# ----------------------------------------------------------------------------
# Maxout
# ----------------------------------------------------------------------------

def _pieces(x, pieces):
  return x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces))


def _computed_once(index):
  """`index` (small integers) unchanged, through an integer division that XLA
  CPU's fusion pass counts as expensive and so computes once, where it would
  recompute the elementwise chain that makes `index` inside each of its
  consumers (three for maxout's gradient: 17 ms each at the street-number
  nets' first layer). `lax.optimization_barrier` does not stop that on CPU.
  By 3: XLA would rewrite a division by a power of two as a cheap shift."""
  return lax.div(index * 3, jnp.array(3, index.dtype))


def _candidates(x, axes):
  """The slices of `x` along `axes`, index tuples in row-major order."""
  for index in np.ndindex(*(x.shape[a] for a in axes)):
    part = x
    for axis, i in sorted(zip(axes, index), reverse=True):
      part = lax.index_in_dim(part, i, axis, keepdims=False)
    yield part


def _max_over(x, axes):
  """The maximum over `axes` (increasing, non-negative); on CPU through
  `_first_max`, whose gradient goes to the first maximal element."""
  return _first_max(x, tuple(axes), tuple(x.shape[a] for a in axes))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _first_max(x, axes, sizes):
  del sizes
  return functools.reduce(jnp.maximum, _candidates(x, axes))


def _first_max_fwd(x, axes, sizes):
  """The maximum, and which element over `axes` (row-major) is the first to
  hold it: computed here, in the loop that makes `x` (XLA fuses the first
  layer's normalisation into it), so `x` itself is never written out."""
  del sizes
  parts = list(_candidates(x, axes))
  y = functools.reduce(jnp.maximum, parts)
  first = jnp.full(y.shape, len(parts) - 1, jnp.int32)
  for i in reversed(range(len(parts) - 1)):
    first = jnp.where(parts[i] == y, i, first)
  return y, first


def _first_max_bwd(axes, sizes, first, g):
  return (_to_first(axes, sizes, _computed_once(first), g),)


def _to_first(axes, sizes, first, g):
  """g routed to the first element over `axes` (row-major order) that holds
  the maximum, as one elementwise loop over the input's shape."""
  shape = list(first.shape)
  for axis, n in zip(axes, sizes):
    shape.insert(axis, n)
  position = 0
  for axis in axes:
    position = position * shape[axis] + lax.broadcasted_iota(jnp.int32, shape,
                                                             axis)
  dx = jnp.where(position == jnp.expand_dims(first, axes),
                 jnp.expand_dims(g, axes), 0)
  return dx.astype(g.dtype)


_first_max.defvjp(_first_max_fwd, _first_max_bwd)


def maxout(x, pieces: int):
  """The maximum over each group of `pieces` consecutive channels (the last
  axis). On CPU pairwise maxima and a backward that routes each gradient to
  the first maximal piece in one loop: XLA CPU ran the max reduction several
  times slower, and autodiff of the pairwise maxima wrote one padded copy of
  the input per piece and summed them. Elsewhere the reduction."""
  if not _on_cpu():
    return _pieces(x, pieces).max(-1)
  return _max_over(_pieces(x, pieces), (x.ndim,))


# ----------------------------------------------------------------------------
# A first layer kept in 2x2 blocks
# ----------------------------------------------------------------------------

def blocked_layout_applies(x_shape, kernel: int, pool_stride: int) -> bool:
  """Whether a stride-1 SAME `kernel` x `kernel` convolution of NHWC input
  this shape, followed by a 2x2 max pool of `pool_stride`, can keep its
  output in 2x2 blocks (`space_to_depth`) up to the pool: on CPU, where the
  convolution runs space-to-depth (its output then is blocks, which XLA
  reads as such without a copy), and where each pool window is one block."""
  _, h, w, cin = x_shape
  return (_on_cpu() and pool_stride == 2 and h % 2 == 0 and w % 2 == 0
          and _space_to_depth_suits(kernel, kernel, cin))


def blocked_maxout_pool(x, pieces: int):
  """`maxout(depth_to_space(x), pieces)` then its 2x2 stride-2 max pool, for
  x in 2x2 blocks ((B, H/2, W/2, 2, 2, C)): each output the maximum over one
  block's four phases and one unit's pieces (pieces 1: the pool alone). On
  CPU its gradient goes to the first maximal phase in row-major order and,
  in it, the first maximal piece, as `max_pool`'s and `maxout`'s do."""
  b, h, w, _, _, c = x.shape
  x = x.reshape(b, h, w, 4, c // pieces, pieces)
  if not _on_cpu():
    return x.max((3, 5))
  return _max_over(x, (3, 5))


def blocked_batchnorm_maxout_pool(x, scale, bias, epsilon: float,
                                  pieces: int):
  """`blocked_maxout_pool` of x batch-normalised with its own statistics, as
  flax's nn.BatchNorm does in training (mean and E[x^2] - mean^2 over all
  axes but the channels, `epsilon`, then `scale` and `bias`), for x in 2x2
  blocks. Its gradient is one pass over x: of the normalisation's channel
  sums, each term not zero comes from one pool output, so they are summed
  over the outputs, 4 x `pieces` times fewer terms than x has. Autodiff
  computed the maxout and pool's gradient three times over x instead, for
  those sums (YNNPACK reductions of written-out inputs) and for the result."""
  return _batchnorm_maxout_pool(x, scale, bias, epsilon, pieces)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batchnorm_maxout_pool(x, scale, bias, epsilon, pieces):
  return _batchnorm_maxout_pool_fwd(x, scale, bias, epsilon, pieces)[0]


def _batchnorm_maxout_pool_fwd(x, scale, bias, epsilon, pieces):
  dtype, x = x.dtype, x.astype(jnp.float32)  # flax's float32 statistics
  axes = tuple(range(x.ndim - 1))
  mean = x.mean(axes)
  variance = jnp.maximum(0., (x * x).mean(axes) - mean * mean)
  rstd = lax.rsqrt(variance + epsilon)
  b, h, w, _, _, c = x.shape
  z = ((x - mean) * (rstd * scale) + bias).reshape(b, h, w, 4, c // pieces,
                                                    pieces)
  out, first = _first_max_fwd(z, (3, 5), (4, pieces))
  return out.astype(dtype), (x, mean, rstd, scale, first)


def _batchnorm_maxout_pool_bwd(epsilon, pieces, res, g):
  del epsilon
  x, mean, rstd, scale, first = res
  dtype, g = g.dtype, g.astype(jnp.float32)  # the output's dtype is x's
  first = _computed_once(first)
  b, h, w, _, _, c = x.shape
  per_channel = x.size // c
  units = c // pieces
  # Each output's source element (first maximum, row-major over phase and
  # piece) and its channel: the output's unit, piece first % pieces.
  blocks = x.reshape(b, h, w, 4, units, pieces)
  source = functools.reduce(
      jnp.add, (jnp.where(first == i, part, 0)
                for i, part in enumerate(_candidates(blocks, (3, 5)))))
  piece = first % pieces

  def at_source(v):  # a per-channel vector's entry for each output's source
    v = v.reshape(units, pieces)
    return functools.reduce(jnp.add, (jnp.where(piece == k, v[:, k], 0)
                                      for k in range(pieces)))

  normalised = (source - at_source(mean)) * at_source(rstd)
  one_hot = piece[..., None] == jnp.arange(pieces)
  # Per channel: sum of dL/dz (the bias's gradient), of dL/dz * x-hat (the
  # scale's).
  dbias = jnp.where(one_hot, g[..., None], 0).sum((0, 1, 2)).reshape(c)
  dscale = jnp.where(one_hot, (g * normalised)[..., None], 0).sum(
      (0, 1, 2)).reshape(c)
  dz = _to_first((3, 5), (4, pieces), first, g).reshape(x.shape)
  dx = (rstd * scale / per_channel) * (
      per_channel * dz - dbias - (x - mean) * rstd * dscale)
  return dx.astype(dtype), dscale, dbias


_batchnorm_maxout_pool.defvjp(_batchnorm_maxout_pool_fwd,
                              _batchnorm_maxout_pool_bwd)


# ----------------------------------------------------------------------------
# Average pooling
# ----------------------------------------------------------------------------

def _pooling_matrix(size: int, window: int, stride: int) -> np.ndarray:
  """(outputs, size): row i is 1 on the inputs window i covers (VALID)."""
  starts = stride * np.arange((size - window) // stride + 1)
  offsets = np.arange(size)[None, :] - starts[:, None]
  return ((offsets >= 0) & (offsets < window)).astype(np.float32)


def avg_pool(x, window: int, stride: int):
  """VALID 2-D average pool of NHWC input, square window. On CPU two small
  matmuls with 0/1 pooling matrices, one per spatial axis: XLA CPU's
  reduce_window gradient ran on one core (GoogLeNet's auxiliary 5x5/3
  pools). Elsewhere reduce_window."""
  if not _on_cpu() or x.ndim != 4:
    return lax.reduce_window(x, 0.0, lax.add, (1, window, window, 1),
                             (1, stride, stride, 1), 'VALID') / window**2
  rows = _pooling_matrix(x.shape[1], window, stride)
  cols = _pooling_matrix(x.shape[2], window, stride)
  return jnp.einsum('ih,bhwc,jw->bijc', rows.astype(x.dtype), x,
                    cols.astype(x.dtype)) / window**2
