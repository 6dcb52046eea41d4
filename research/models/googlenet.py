"""GoogLeNet: Szegedy et al., "Going Deeper with Convolutions", 2014, section 5
and Table 1.

Stem (7x7/2 conv, 3x3/2 max pool, LRN, 1x1 conv, 3x3 conv, LRN, 3x3/2 max
pool), nine Inception modules with Table 1's filter counts and real 5x5
branches, 3x3/2 max pools before 4a and 5a, 7x7 average pool, dropout 0.4,
linear classifier. 22 layers with parameters; with 1000 classes 6,998,552
parameters. The two auxiliary classifiers on 4a and 4d (5x5/3 average pool, 1x1
conv 128, fc 1024, dropout 0.7, linear; loss weight 0.3 in training) add
6,379,728, for 13,378,280. Their logits are sown in the 'aux_logits'
collection in training only.

`dtype` is the arithmetic's dtype (e.g. 'bfloat16'); params and all logits,
main and auxiliary, are float32, so the losses are computed in float32.
"""
import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from research import configlib
from research.models import fast_ops
from research.models import layers
from research.models import lrn

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION = {
    '3a': (64, 96, 128, 16, 32, 32),
    '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64),
    '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}
AUX_AFTER = ('4a', '4d')
# weight_init -> kernel initializer. The paper does not say; 'lecun' (variance
# 1/fan_in) is Caffe's bvlc_googlenet "xavier" in its default fan-in mode.
# 'he' (2/fan_in) keeps ReLU activations from shrinking layer after layer; the
# upscaled-MNIST variant uses it (configs/googlenet.py).
INITS = {'lecun': nn.initializers.lecun_normal(),
         'he': nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')}


def _norm(x):
  # bvlc_googlenet's: Caffe's LRN, size 5, alpha 1e-4 (divided by size), beta 0.75.
  return lrn.local_response_norm(x, **lrn.CAFFE)


def _max_pool(x, stride=2):
  return fast_ops.max_pool(x, (3, 3), strides=(stride, stride), padding='SAME')


class Inception(nn.Module):
  """Four parallel branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 5x5;
  3x3 max pool -> 1x1 (Figure 2b)."""
  filters: tuple
  dtype: layers.Dtype = jnp.float32
  kernel_init: layers.Initializer = INITS['lecun']

  @nn.compact
  def __call__(self, x):
    n1, r3, n3, r5, n5, proj = self.filters
    conv = functools.partial(layers.ConvReLU, dtype=self.dtype,
                             kernel_init=self.kernel_init)
    x = jnp.concatenate([
        conv(n1, 1, name='1x1')(x),
        conv(n3, 3, name='3x3')(conv(r3, 1, name='3x3_reduce')(x)),
        conv(n5, 5, name='5x5')(conv(r5, 1, name='5x5_reduce')(x)),
        conv(proj, 1, name='pool_proj')(_max_pool(x, stride=1)),
    ], axis=-1)
    self.sow('intermediates', 'output', x)
    return x


class AuxHead(nn.Module):
  """Auxiliary classifier (section 5): avg pool 5x5/3, 1x1 conv 128, fc 1024,
  dropout 0.7, linear."""
  num_classes: int
  dtype: layers.Dtype = jnp.float32
  kernel_init: layers.Initializer = INITS['lecun']

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.avg_pool(x, 5, stride=3)
    x = layers.ConvReLU(128, 1, dtype=self.dtype, kernel_init=self.kernel_init,
                        name='conv')(x)
    x = layers.DenseReLU(1024, dtype=self.dtype, kernel_init=self.kernel_init,
                         name='fc')(x.reshape((x.shape[0], -1)))
    x = nn.Dropout(0.7, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=self.kernel_init,
                    name='classifier')(x).astype(jnp.float32)


class GoogLeNet(nn.Module):
  input_size: ClassVar[int] = 224
  num_classes: int = 1000
  aux_heads: bool = True
  dropout: float = 0.4
  dtype: layers.Dtype = 'float32'
  weight_init: str = 'lecun'  # a key of INITS

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    dtype = layers.compute_dtype(self.dtype)
    configlib.choose('GoogLeNet weight_init', self.weight_init, INITS)
    init = INITS[self.weight_init]
    conv = functools.partial(layers.ConvReLU, dtype=dtype, kernel_init=init)
    # Pad 3 on every side, as bvlc_googlenet: 'SAME' would pad 2 before and
    # 3 after, shifting every window by a pixel (same output size).
    x = _max_pool(conv(64, 7, stride=2, padding=3, name='conv1')(x))
    x = _norm(x)
    x = conv(192, 3, name='conv2')(conv(64, 1, name='conv2_reduce')(x))
    x = _max_pool(_norm(x))
    for name, filters in INCEPTION.items():
      if name in ('4a', '5a'):
        x = _max_pool(x)
      x = Inception(filters, dtype=dtype, kernel_init=init,
                    name=f'inception_{name}')(x)
      # Aux heads exist from init on so their parameters are in every state.
      if (self.aux_heads and name in AUX_AFTER
          and (train or self.is_initializing())):
        self.sow('aux_logits', name,
                 AuxHead(self.num_classes, dtype=dtype, kernel_init=init,
                         name=f'aux_{name}')(x, train))
    # Table 1's 7x7 average pool covers the whole 7x7 map of a 224 input; a
    # mean over the map is the same there and lets smaller inputs (upscaled
    # MNIST digits) through. Summed in float32 (49 bfloat16 values would lose
    # bits); the classifier computes in `dtype` again.
    x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=dtype, kernel_init=init,
                    name='classifier')(x).astype(jnp.float32)
