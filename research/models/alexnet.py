"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, section 3 (Figure 2).

Five convolutions and three fully connected layers, ReLU after each; local
response normalisation after conv1 and conv2; overlapping 3x3/2 max pools after
both normalisations and after conv5; dropout 0.5 on fc6 and fc7. conv2, conv4
and conv5 are split into two towers, each seeing only its half of the previous
layer's channels (the paper's two GPUs); conv3 and the fc layers see both. With 227x227 inputs
(which give the paper's 55x55 conv1 maps) and 1000 classes: 60,965,224
parameters, as Caffe's bvlc_alexnet; `towers=1` gives 62,378,344.

Initialisation (section 5): weights N(0, 0.01); biases 1 in conv2, conv4, conv5,
fc6 and fc7, 0 elsewhere.
"""
import functools
from typing import ClassVar

import flax.linen as nn

from research.models import layers
from research.models import lrn

_weights = nn.initializers.normal(0.01)
_one = nn.initializers.ones


def _pool(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class AlexNet(nn.Module):
  input_size: ClassVar[int] = 227  # gives the paper's 55x55 conv1 maps
  num_classes: int = 1000
  towers: int = 2
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    conv = functools.partial(layers.ConvReLU, kernel_init=_weights)
    x = conv(96, 11, stride=4, padding=0, name='conv1')(x)
    x = _pool(lrn.local_response_norm(x))
    x = conv(256, 5, padding=2, towers=self.towers, bias_init=_one,
             name='conv2')(x)
    x = _pool(lrn.local_response_norm(x))
    x = conv(384, 3, padding=1, name='conv3')(x)
    x = conv(384, 3, padding=1, towers=self.towers, bias_init=_one,
             name='conv4')(x)
    x = conv(256, 3, padding=1, towers=self.towers, bias_init=_one,
             name='conv5')(x)
    x = _pool(x).reshape((x.shape[0], -1))
    for name in ('fc6', 'fc7'):
      x = layers.DenseReLU(4096, kernel_init=_weights, bias_init=_one,
                           name=name)(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=_weights, name='fc8')(x)
