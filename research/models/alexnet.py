"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, section 3 (Figure 2).

Five convolutions and three fully connected layers, ReLU after each; local
response normalisation after conv1 and conv2; overlapping 3x3/2 max pools after
both normalisations and after conv5; dropout 0.5 on fc6 and fc7. conv2, conv4
and conv5 are split into two towers, each seeing only its half of the previous
layer's channels (the paper's two GPUs); conv3 and the fc layers see both. With 227x227 inputs
(which give the paper's 55x55 conv1 maps) and 1000 classes: 60,965,224
parameters, as Caffe's bvlc_alexnet; `towers=1` gives 62,378,344.

Each tower's grouped layers are one param with a leading towers axis; with a
mesh axis 'model' of size 2 each tower runs on its own device, as on the
paper's two GPUs (see `towers`).

Initialisation (section 5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5,
fc6 and fc7, 0 elsewhere.

`dtype` is the arithmetic's dtype (e.g. 'bfloat16'); params and the returned
logits are float32, so the loss is computed in float32.
"""
import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from research import configlib
from research.models import fast_ops
from research.models import layers
from research.models import lrn

# weight_init -> (kernels, biases of conv2, conv4, conv5, fc6, fc7).
INITS = {
    'paper': (nn.initializers.normal(0.01), nn.initializers.ones),
    # He et al. 2015 fan-in init, zero biases: N(0, 0.01) keeps almost no
    # signal at small inputs (upscaled 67x67 MNIST: logits vary 0.1% across
    # images at init and training stalls at chance), see configs/alexnet.py.
    'he': (nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'),
           nn.initializers.zeros),
}


def _pool(x):
  return fast_ops.max_pool(x, (3, 3), strides=(2, 2))


class AlexNet(nn.Module):
  input_size: ClassVar[int] = 227  # gives the paper's 55x55 conv1 maps
  num_classes: int = 1000
  towers: int = 2
  dropout: float = 0.5
  dtype: layers.Dtype = 'float32'
  weight_init: str = 'paper'  # a key of INITS
  # 'paper' (section 3.3: k = 2, alpha 1e-4) or 'caffe' (k = 1, alpha / 5),
  # what BVLC's bvlc_alexnet weights were trained with.
  lrn: str = 'paper'

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    dtype = layers.compute_dtype(self.dtype)
    configlib.choose('AlexNet weight_init', self.weight_init, INITS)
    weights, hidden_bias = INITS[self.weight_init]
    conv = functools.partial(layers.ConvReLU, kernel_init=weights, dtype=dtype)
    configlib.choose('AlexNet lrn', self.lrn, lrn.KINDS)
    norm = lambda x: lrn.local_response_norm(x, **lrn.KINDS[self.lrn])
    x = conv(96, 11, stride=4, padding=0, name='conv1')(x)
    x = _pool(norm(x))
    x = conv(256, 5, padding=2, towers=self.towers, bias_init=hidden_bias,
             name='conv2')(x)
    x = _pool(norm(x))
    x = conv(384, 3, padding=1, name='conv3')(x)
    x = conv(384, 3, padding=1, towers=self.towers, bias_init=hidden_bias,
             name='conv4')(x)
    x = conv(256, 3, padding=1, towers=self.towers, bias_init=hidden_bias,
             name='conv5')(x)
    x = _pool(x).reshape((x.shape[0], -1))
    for name in ('fc6', 'fc7'):
      x = layers.DenseReLU(4096, kernel_init=weights, bias_init=hidden_bias,
                           dtype=dtype, name=name)(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=weights, dtype=dtype,
                    name='fc8')(x).astype(jnp.float32)
