"""One sigmoid neuron, the first unit of the story (Nielsen ch.1, "Perceptrons"
and "Sigmoid neurons"): output sigmoid(w . x + b), read as "yes" where w . x + b > 0.
"""
import flax.linen as nn

from research.models import layers


class Neuron(nn.Module):
  """A single unit: returns the logit w . x + b, shape (batch, 1)."""

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # nothing behaves differently in training
    x = x.reshape((x.shape[0], -1))
    return layers.Linear(1, kernel_init=nn.initializers.zeros, name='unit')(x)
