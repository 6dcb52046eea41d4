"""Nielsen, *Neural Networks and Deep Learning*, ch.6: the MNIST convnet of
network3.py.

Two `ConvPoolLayer`s (5x5 valid convolutions of 20 then 40 feature maps, each
followed by 2x2 max pooling), a 100-unit fully connected layer and a 10-way
softmax; with ReLU units (his 99.23% run) 28x28 -> 24 -> 12 -> 8 -> 4, so the
fully connected layer reads 40 * 4 * 4 values. `features` and `hidden` change
the widths (tests use narrow copies). Every layer's activations are sown in
'intermediates' as 'conv1/pre_relu', 'conv1/relu', ... (`layers.relu`).
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from research.models import fast_ops
from research.models import layers


class ConvNet(nn.Module):
  features: Sequence[int] = (20, 40)
  kernel: int = 5
  hidden: Sequence[int] = (100,)
  num_classes: int = 10
  dropout: float = 0.0
  dtype: layers.Dtype = 'float32'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    dtype = layers.compute_dtype(self.dtype)
    x = x.astype(dtype)
    for i, features in enumerate(self.features):
      x = layers.ConvReLU(features, self.kernel, padding='VALID', dtype=dtype,
                          name=f'conv{i + 1}')(x)
      x = fast_ops.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    for i, units in enumerate(self.hidden):
      x = layers.DenseReLU(units, dtype=dtype, name=f'fc{i + 1}')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=dtype, name='output')(x).astype(
        jnp.float32)
