"""Nielsen, *Neural Networks and Deep Learning*: the fully connected MNIST network.

Chapter 1 (network.py): `Network([784, 30, 10])`, sigmoid units, weights and
biases drawn from N(0, 1). Chapter 3 (network2.py) keeps the architecture and
initialises weights from N(0, 1/n_in) (`weight_init='scaled_normal'`), biases N(0, 1).
"""
from typing import Sequence

import flax.linen as nn
import jax

from research import configlib
from research.models import layers

ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'tanh': jax.nn.tanh, 'relu': jax.nn.relu}
WEIGHT_INITS = {
    'standard_normal': nn.initializers.normal(1.0),   # ch.1 network.py
    'scaled_normal': layers.lecun_normal,              # ch.3: N(0, 1/n_in)
}


class MLP(nn.Module):
  """Images in [0, 1] -> flattened -> hidden layers -> `num_classes` logits.

  Each hidden activation is sown as 'intermediates'/'hidden{i}' so visualization
  code can read any layer without changes here.
  """
  hidden: Sequence[int] = (30,)
  num_classes: int = 10
  activation: str = 'sigmoid'
  weight_init: str = 'standard_normal'
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    configlib.choose('activation', self.activation, ACTIVATIONS)
    configlib.choose('weight_init', self.weight_init, WEIGHT_INITS)
    act = ACTIVATIONS[self.activation]
    dense = lambda n, name: layers.Linear(
        n, kernel_init=WEIGHT_INITS[self.weight_init],
        bias_init=nn.initializers.normal(1.0), name=name)
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = act(dense(width, f'dense{i}')(x))
      self.sow('intermediates', f'hidden{i}', x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return dense(self.num_classes, 'output')(x)
