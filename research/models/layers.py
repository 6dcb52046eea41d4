"""Layers shared by the models.

Every layer takes `dtype`, the dtype its arithmetic runs in (bfloat16 on
accelerators); params stay float32 (flax's param_dtype), so updates are not
rounded to 8 bits of mantissa.
"""
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import configlib
from research.models import fast_ops
from research.models import towers as towers_lib

Initializer = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]
Dtype = Any  # a jnp dtype or its name, as configs give it: 'bfloat16'
DTYPES = ('float32', 'bfloat16', 'float16')


def compute_dtype(dtype: Dtype) -> jnp.dtype:
  """A model's `dtype` field (often a config string) as a jnp dtype."""
  name = dtype if isinstance(dtype, str) else jnp.dtype(dtype).name
  configlib.choose('model dtype', name, DTYPES)
  return jnp.dtype(name)


def avg_pool(x, window: int, stride: int | None = None):
  """Average pool summed in float32: a 7x7 window of bfloat16 values would
  lose bits in a bfloat16 sum. Returns x's dtype."""
  return fast_ops.avg_pool(x.astype(jnp.float32), window,
                          stride or window).astype(x.dtype)

# Fan-in initializers for a kernel stored (out, in).
lecun_normal = nn.initializers.variance_scaling(
    1.0, 'fan_in', 'normal', in_axis=-1, out_axis=-2)


class Linear(nn.Module):
  """z = x W^T + b with W stored (out, in), as w[j, k] in Nielsen's network.py.

  The layout is also a speed choice: on CPU, with Nielsen's mini-batch of 10,
  both the forward product and the weight gradient dC/dW = delta^T x then read
  and write rows of length n_in, and the SGD update vectorises along them,
  which ran an MNIST epoch faster than flax's (in, out) nn.Dense
  (results/README.md, 2026-11-23 and 2026-11-30).
  """
  features: int
  kernel_init: Initializer = lecun_normal
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init, (self.features, x.shape[-1]),
                        jnp.float32)
    bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
    return fast_ops.linear(x, kernel) + bias


NORMS = ('none', 'batch', 'layer', 'group')


# The running averages' momentum: 0.9 follows a short CPU run's fast-changing
# weights (flax's 0.99 lags about 100 steps); research/precise_bn.py can
# replace them before each evaluation.
BATCHNORM_MOMENTUM = 0.9
BATCHNORM_EPSILON = 1e-5  # flax's default, named for fast_ops' fused layer


class Norm(nn.Module):
  """A normalisation of a layer's pre-activations, or none.

  'batch': BatchNorm (Ioffe and Szegedy 2015) over the batch and spatial
  axes, its running averages in the 'batch_stats' collection (under jit on a
  mesh the batch statistics are those of the global batch); 'layer':
  LayerNorm over each example's features; 'group': GroupNorm, up to
  GROUPS channel groups. Each learns a scale and a shift, so the layer
  before it needs no bias.
  """
  kind: str = 'none'
  dtype: Dtype = jnp.float32
  GROUPS = 8

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    configlib.choose('normalisation (config.model.norm)', self.kind, NORMS)
    if self.kind == 'none':
      return x
    if self.kind == 'batch':
      return nn.BatchNorm(use_running_average=not train,
                          momentum=BATCHNORM_MOMENTUM,
                          epsilon=BATCHNORM_EPSILON,
                          dtype=self.dtype, name='batch')(x)
    if self.kind == 'layer':
      return nn.LayerNorm(dtype=self.dtype, name='layer')(x)
    return nn.GroupNorm(num_groups=math.gcd(x.shape[-1], self.GROUPS),
                        dtype=self.dtype, name='group')(x)


def relu(module: nn.Module, x, sown=lambda a: a):
  """ReLU, sowing 'pre_relu' and 'relu' on `module` for visualization (lucid
  maximises pre-ReLU values: a dead ReLU gives no gradient), each as
  `sown` of it (a layout change, if x is not NHWC)."""
  module.sow('intermediates', 'pre_relu', sown(x))
  x = jax.nn.relu(x)
  module.sow('intermediates', 'relu', sown(x))
  return x


class ConvReLU(nn.Module):
  """ReLU(convolution); with towers > 1 the input channels are split into that
  many groups, each convolved separately (AlexNet's two GPUs, section 3.2) and
  concatenated: see `towers.TowerConv`, whose stacked params sit under
  'towers' (one plain convolution's under 'conv')."""
  features: int
  kernel: int
  stride: int = 1
  padding: int | str = 'SAME'
  towers: int = 1
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    if self.towers > 1:
      x = towers_lib.TowerConv(
          self.features, self.kernel, self.towers, stride=self.stride,
          padding=self.padding, dtype=self.dtype, kernel_init=self.kernel_init,
          bias_init=self.bias_init, name='towers')(x)
    else:
      x = nn.Conv(self.features, (self.kernel, self.kernel),
                  strides=self.stride, padding=self.padding, dtype=self.dtype,
                  kernel_init=self.kernel_init, bias_init=self.bias_init,
                  conv_general_dilated=fast_ops.conv_general_dilated,
                  name='conv')(x)
    return relu(self, x)


class DenseReLU(nn.Module):
  """ReLU(fully connected), optionally normalised before the ReLU (`norm`,
  see `Norm`)."""
  features: int
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros
  norm: str = 'none'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.Dense(self.features, dtype=self.dtype, use_bias=self.norm == 'none',
                 kernel_init=self.kernel_init, bias_init=self.bias_init,
                 name='dense')(x)
    return relu(self, Norm(self.norm, self.dtype, name='norm')(x, train=train))
