"""Layers shared by the models."""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]

# Fan-in initializers for a kernel stored (out, in).
lecun_normal = nn.initializers.variance_scaling(
    1.0, 'fan_in', 'normal', in_axis=-1, out_axis=-2)


class Linear(nn.Module):
  """z = x W^T + b with W stored (out, in), as w[j, k] in Nielsen's network.py.

  The layout is also a speed choice: on CPU, with Nielsen's mini-batch of 10,
  both the forward product and the weight gradient dC/dW = delta^T x then read
  and write rows of length n_in, and the SGD update vectorises along them. It
  ran an MNIST epoch 1.5x faster here than flax's (in, out) nn.Dense.
  """
  features: int
  kernel_init: Initializer = lecun_normal
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init, (self.features, x.shape[-1]),
                        jnp.float32)
    bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ()))) + bias


def relu(module: nn.Module, x):
  """ReLU, sowing 'pre_relu' and 'relu' on `module` for visualization (lucid
  maximises pre-ReLU values: a dead ReLU gives no gradient)."""
  module.sow('intermediates', 'pre_relu', x)
  x = jax.nn.relu(x)
  module.sow('intermediates', 'relu', x)
  return x


class ConvReLU(nn.Module):
  """ReLU(convolution); with towers > 1 the input channels are split into that
  many groups, each convolved separately (AlexNet's two GPUs) and concatenated.
  Separate convolutions, because XLA's CPU grouped convolution
  (feature_group_count > 1) is several times slower."""
  features: int
  kernel: int
  stride: int = 1
  padding: int | str = 'SAME'
  towers: int = 1
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    parts = jnp.split(x, self.towers, axis=-1)
    outs = [nn.Conv(self.features // self.towers, (self.kernel, self.kernel),
                    strides=self.stride, padding=self.padding,
                    kernel_init=self.kernel_init, bias_init=self.bias_init,
                    name=f'tower{i}' if self.towers > 1 else 'conv')(part)
            for i, part in enumerate(parts)]
    return relu(self, jnp.concatenate(outs, axis=-1) if self.towers > 1
                else outs[0])


class DenseReLU(nn.Module):
  """ReLU(fully connected)."""
  features: int
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    return relu(self, nn.Dense(self.features, kernel_init=self.kernel_init,
                               bias_init=self.bias_init, name='dense')(x))
