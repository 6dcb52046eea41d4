"""The street-number recognizer: Goodfellow, Bulatov, Ibarz, Arnoud, Shet,
"Multi-digit Number Recognition from Street View Imagery using Deep
Convolutional Neural Networks", 2013 (arXiv 1312.6082), sections 3 and 5.1.

One convnet reads a whole number: P(S | X) = P(L = n | X) prod_{i<=n} P(S_i | X),
with a softmax over the length L (0..5 and ">5") and one 10-way softmax per
digit position (section 3). The best network (section 5.1) has 11 hidden
layers: convolutions of 48, 64, 128, 160 then 192 units with 5x5 kernels and
zero padding, maxout with 3 filters per unit in the first layer and ReLU in
the others, a 2x2 max pool after every convolution with strides alternating 2
and 1, dropout on every hidden layer, and two fully connected layers of 3,072.

`hidden_layers` is the depth of Fig. 5: the top `dense_layers` hidden layers
are fully connected, the rest convolutional. By default (`dense_layers=None`)
they are laid out as Fig. 5's legend says: nets of 3 to 7 hidden layers have
one fully connected layer, those of 8 or more two; so the 3-layer net is two
convolutions and one dense layer. Where the paper's 11-layer net has a
locally connected layer (its 9th, on the 4x4 maps the eight pooled
convolutions leave), so does this one (`locally_connected`, `LocalConv`
with flax ConvLocal's parameters: 5x5 windows, unpooled, weights unshared
across positions, which lets it tell digit positions apart on maps where a
stride-1 pool has merged neighbours); `locally_connected=False` makes it a
shared-weight convolution.
The subtractive normalisation is left out. `width` scales every layer's
units, so a CPU can run the same architecture smaller; `small_map_width`, if
set, replaces it for the convolutions that read maps of 7x7 or less (the 6th
on, at 54x54), where units cost few FLOPs: at an eighth of the width the
11-layer net would otherwise hand only 4x4x24 features to its dense layers.

`norm` is not the paper's: 'none' (the paper) or a normalisation before every
maxout and ReLU, convolutional and dense ('batch', 'layer', 'group'; see
`layers.Norm`), which lets a short CPU budget train the deep nets.

Returns {'length': (B, 7), 'digits': (B, max_digits, 10)} logits, or with
`per_digit` (the svhn_cropped baseline) a single (B, 10) softmax's logits.
Every hidden layer's activations are sown in 'intermediates' (the first
layer's as 'maxout').
"""
import math
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from research.models import fast_ops
from research.models import layers

CONV_UNITS = (48, 64, 128, 160, 192)  # then 192 for the rest (section 5.1)
PAPER_CONVS = 8  # convolutions with pooling in the 11-layer net
SMALL_MAP = 7    # `small_map_width` applies to convolutions on maps this small
LENGTH_CLASSES = 7                     # 0..5 digits and "more than 5"
# Fig. 5's legend: from this many hidden layers on, two fully connected
# layers; below it, one.
TWO_DENSE_FROM = 8


def fig5_dense_layers(hidden_layers: int) -> int:
  """Fully connected hidden layers of the Fig. 5 net of this depth."""
  return 2 if hidden_layers >= TWO_DENSE_FROM else 1


class LocalConv(nn.Module):
  """flax's ConvLocal at stride 1, the same parameters (a kernel per output
  position, (H', W', C kh kw, O), and a bias per output), computed by
  `fast_ops.conv_local`: on CPU a matmul on maps no larger than the window."""
  features: int
  kernel_size: tuple[int, int]
  padding: str = 'SAME'
  use_bias: bool = True
  dtype: layers.Dtype = None
  kernel_init: layers.Initializer = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, x):
    pads = lax.padtype_to_pads(x.shape[1:3], self.kernel_size, (1, 1),
                               self.padding)
    out = tuple(n + lo + hi - k + 1 for n, (lo, hi), k
                in zip(x.shape[1:3], pads, self.kernel_size))
    kernel = self.param(
        'kernel', self.kernel_init,
        out + (math.prod(self.kernel_size) * x.shape[3], self.features))
    bias = (self.param('bias', nn.initializers.zeros, out + (self.features,))
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = fast_ops.conv_local(x, kernel, self.kernel_size, self.padding)
    return y if bias is None else y + bias


class ConvLayer(nn.Module):
  """A 5x5 convolution (or, `local`, a locally connected layer: the same
  windows with weights of their own at each position), optionally normalised
  (`norm`), then maxout over `pieces` filters per unit (pieces > 1) or ReLU,
  then, if `pool_stride`, a SAME 2x2 max pool of that stride; activations
  before the pool sown as 'maxout' or 'pre_relu' and 'relu'.

  Where `fast_ops.blocked_layout_applies` (on CPU, the first layer: 3 input
  channels, a stride-2 pool), the normalisation, the nonlinearity and the
  pool work on the convolution's output as 2x2 blocks, the layout its
  space-to-depth form computes, and each pool window is one block: the same
  values, without rearranging the 54x54 maps forward and backward.
  """
  units: int
  kernel: int = 5
  pieces: int = 1
  norm: str = 'none'
  local: bool = False
  pool_stride: int = 0
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    kwargs = dict(padding='SAME', dtype=self.dtype,
                  use_bias=self.norm == 'none',  # a norm's shift replaces it
                  kernel_init=nn.initializers.variance_scaling(
                      2.0, 'fan_in', 'normal'))
    blocked = not self.local and fast_ops.blocked_layout_applies(
        x.shape, self.kernel, self.pool_stride)
    if self.local:
      x = LocalConv(self.units * self.pieces, (self.kernel, self.kernel),
                    name='local', **kwargs)(x)
    else:
      x = nn.Conv(self.units * self.pieces, (self.kernel, self.kernel),
                  conv_general_dilated=fast_ops.conv_general_dilated,
                  name='conv', **kwargs)(x)
    if blocked:
      x = fast_ops.space_to_depth(x)
    natural = fast_ops.depth_to_space if blocked else lambda a: a  # to sow
    norm = layers.Norm(self.norm, dtype=self.dtype, name='norm')
    y = norm(x, train=train)
    if self.pieces == 1:
      y = layers.relu(self, y, sown=natural)
    else:
      maxout = fast_ops.maxout(y, self.pieces)
      self.sow('intermediates', 'maxout', natural(maxout))
      if not blocked:
        y = maxout
    if blocked and train and self.norm == 'batch' and self.pieces > 1:
      # The batch norm's variables and running averages are nn.BatchNorm's
      # (y itself is unused in training, and XLA drops it): its
      # normalisation, maxout and pool as one op with a one-pass gradient.
      batch = norm.variables['params']['batch']
      return fast_ops.blocked_batchnorm_maxout_pool(
          x, batch['scale'], batch['bias'], layers.BATCHNORM_EPSILON,
          self.pieces)
    if blocked:  # maxout and the pool as one maximum
      return fast_ops.blocked_maxout_pool(y, self.pieces)
    x = y
    if self.pool_stride:
      x = fast_ops.max_pool(x, (2, 2), strides=(self.pool_stride,) * 2,
                            padding='SAME')
    return x


class StreetNumbers(nn.Module):
  input_size: ClassVar[int] = 54  # random 54x54 crops of 64x64 (section 5.1)
  hidden_layers: int = 11
  dense_layers: int | None = None  # None: Fig. 5's layout (fig5_dense_layers)
  dense_units: int = 3072
  width: float = 1.0        # multiplies every layer's units
  small_map_width: float | None = None  # for convolutions on <= 7x7 maps
  maxout_pieces: int = 3
  kernel: int = 5
  dropout: float = 0.2
  max_digits: int = 5
  per_digit: bool = False   # one 10-way head: the per-digit (cropped) baseline
  num_classes: int = 10
  norm: str = 'none'        # none (the paper) | batch | layer | group
  locally_connected: bool = True  # the layers after the 8 pooled convolutions
  dtype: layers.Dtype = 'float32'

  def num_dense(self) -> int:
    if self.dense_layers is None:
      return fig5_dense_layers(self.hidden_layers)
    return self.dense_layers

  def conv_units(self) -> list[int]:
    """The paper's units of each convolution, before `width`."""
    convs = self.hidden_layers - self.num_dense()
    if convs < 1:
      raise ValueError(f'hidden_layers={self.hidden_layers} leaves no '
                       f'convolution under dense_layers={self.num_dense()}.')
    return [CONV_UNITS[min(i, len(CONV_UNITS) - 1)] for i in range(convs)]

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    dtype = layers.compute_dtype(self.dtype)
    he = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
    drop = nn.Dropout(self.dropout, deterministic=not train)
    x = x.astype(dtype)
    for i, paper_units in enumerate(self.conv_units()):
      small = self.small_map_width is not None and x.shape[1] <= SMALL_MAP
      units = max(1, round(paper_units * (self.small_map_width if small
                                          else self.width)))
      # Maxout in the first layer only (section 5.1).
      local = self.locally_connected and i >= PAPER_CONVS
      # Pool strides alternate 2 and 1; the locally connected layer is not
      # pooled.
      pool_stride = (2 if i % 2 == 0 else 1) if i < PAPER_CONVS else 0
      x = drop(ConvLayer(units, self.kernel,
                         self.maxout_pieces if i == 0 else 1, self.norm,
                         local, pool_stride, dtype, name=f'conv{i + 1}')(
                             x, train=train))
    x = x.reshape((x.shape[0], -1))
    units = max(1, round(self.dense_units * self.width))
    for i in range(self.num_dense()):
      x = drop(layers.DenseReLU(units, dtype=dtype, kernel_init=he,
                                norm=self.norm, name=f'dense{i + 1}')(
                                    x, train=train))
    head = lambda n, name: nn.Dense(n, dtype=dtype, name=name)(x).astype(
        jnp.float32)
    if self.per_digit:
      return head(self.num_classes, 'digit')
    digits = [head(self.num_classes, f'digit{i + 1}')
              for i in range(self.max_digits)]
    return {'length': head(LENGTH_CLASSES, 'length'),
            'digits': jnp.stack(digits, axis=1)}
