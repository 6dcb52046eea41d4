"""BatchNorm statistics recomputed before evaluation (PreciseBN: Wu and
Johnson, "Rethinking 'Batch' in BatchNorm", 2021, section 3).

Training keeps exponential running averages (research/models/layers.py,
momentum 0.9), which weigh the last few hundred images and lag weights that
are still moving; a net with many BatchNorm layers may then be scored with
statistics no batch of its final weights produced. This averages, with equal
weights, each layer's batch mean and batch variance over a fixed set of
training batches seen with the weights being evaluated.
"""
import jax
import jax.numpy as jnp

from research.data import prepare as prepare_lib
from research.models import layers


def make_recompute(model, prepare=prepare_lib.to_float,
                   momentum: float = layers.BATCHNORM_MOMENTUM):
  """(variables, batches (K, B, ...)) -> batch_stats averaged over K batches.

  Flax's BatchNorm updates its averages as m * old + (1 - m) * batch; started
  from zeros, one training-mode pass leaves (1 - m) times that batch's own
  statistics, which are divided back out.
  """

  @jax.jit
  def recompute(variables, batches):
    zeros = jax.tree.map(jnp.zeros_like, variables['batch_stats'])

    def batch_statistics(batch):
      _, new = model.apply(
          {**variables, 'batch_stats': zeros},
          prepare(prepare_lib.augment_on_device(batch)), train=True,
          rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
      return jax.tree.map(lambda x: x / (1 - momentum), new['batch_stats'])

    return jax.tree.map(lambda x: x.mean(0),
                        jax.lax.map(batch_statistics, batches))

  return recompute
