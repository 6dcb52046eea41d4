"""The compiled functions of training: the state (params, optimizer state,
BatchNorm statistics) placed over the mesh, a chunk of K training steps as one
call, and the summed evaluation counts of a chunk of batches. research/train.py
runs them; research/bench.py and the benchmarks time them.
"""
import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training import train_state

from research import mesh as mesh_lib
from research.data import prepare as prepare_lib


class TrainState(train_state.TrainState):
  """flax's TrainState whose updates keep its arrays' shardings.

  Left alone, XLA may place the updated state differently from the state it
  was given (on a 'model' axis it may split replicated params over it), and a
  step compiled for one placement refuses the other: the update is
  constrained to `shardings`, one sharding per leaf in leaf order (a tuple:
  static fields must hash); None leaves the choice to XLA.
  """
  shardings: tuple | None = flax.struct.field(pytree_node=False, default=None)
  # The model's BatchNorm running averages ({} for models without BatchNorm).
  batch_stats: dict = flax.struct.field(default_factory=dict)

  def variables(self, params=None) -> dict:
    """What model.apply takes: params (this state's unless given) and any
    batch statistics."""
    params = self.params if params is None else params
    return {'params': params, **({'batch_stats': self.batch_stats}
                                 if self.batch_stats else {})}

  def apply_gradients(self, *, grads, **kwargs):
    new = super().apply_gradients(grads=grads, **kwargs)
    if self.shardings is None:
      return new
    return jax.lax.with_sharding_constraint(
        new, jax.tree.unflatten(jax.tree.structure(new), self.shardings))


def create_train_state(model, tx, rng, sample_images, mesh) -> TrainState:
  """Initialises params and optimizer state in one compiled call, placed over
  `mesh` as the model's partitioning metadata says (AlexNet's tower params
  split over 'model', one tower per device); everything else replicated.

  The state holds plain arrays (the metadata boxes are stripped), so the step,
  checkpoints and the optimizer's masks see the same tree as on one device.
  """
  def init(rng, sample_images, shardings=None):
    """(params with their partitioning metadata, the state)."""
    variables = model.init(rng, prepare_lib.to_float(sample_images),
                           train=False)
    boxed = variables['params']
    return boxed, TrainState.create(
        apply_fn=model.apply, params=nn.unbox(boxed), tx=tx,
        batch_stats=nn.unbox(variables.get('batch_stats', {})),
        shardings=shardings)

  # Shapes and metadata only: nothing is computed.
  boxed, abstract = jax.eval_shape(init, rng, sample_images)
  param_shardings = mesh_lib.param_shardings(boxed, mesh)
  shardings = abstract.replace(
      step=mesh_lib.replicated(mesh), params=param_shardings,
      opt_state=mesh_lib.like_params(abstract.opt_state, abstract.params,
                                     param_shardings, mesh),
      batch_stats=jax.tree.map(lambda _: mesh_lib.replicated(mesh),
                               abstract.batch_stats))
  flat = tuple(jax.tree.leaves(shardings))
  return jax.jit(lambda rng, images: init(rng, images, flat)[1],
                 out_shardings=shardings.replace(shardings=flat))(
                     rng, sample_images)


def make_train_chunk(model, loss_fn, aux_loss_weight: float = 0.0,
                     prepare=prepare_lib.to_float):
  """(state, batches (K, B, ...), key) -> (state, per-step losses (K,)).

  Logits a model sows in 'aux_logits' during training (GoogLeNet's auxiliary
  classifiers) add their loss times `aux_loss_weight`. `prepare` turns stored
  pixels into model input (research/data/prepare.py).
  """

  def step(state, batch):
    rng = jax.random.fold_in(batch['key'], state.step)

    def mean_loss(params):
      logits, extra = model.apply(
          state.variables(params),
          prepare(prepare_lib.augment_on_device(batch)), train=True,
          rngs={'dropout': rng}, mutable=['aux_logits', 'batch_stats'])
      loss = jnp.mean(loss_fn(logits, batch['label']))
      for (aux,) in extra.get('aux_logits', {}).values():
        loss += aux_loss_weight * jnp.mean(loss_fn(aux, batch['label']))
      return loss, extra.get('batch_stats', state.batch_stats)

    (loss, batch_stats), grads = jax.value_and_grad(
        mean_loss, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), loss

  @functools.partial(jax.jit, donate_argnums=0)
  def train_chunk(state, batches, key):
    if batches['label'].shape[0] == 1:
      # No loop: XLA's CPU convolutions run several times slower inside a
      # while loop, so conv nets use steps_per_call=1 (results/README.md).
      state, loss = step(state, {**jax.tree.map(lambda x: x[0], batches),
                                 'key': key})
      return state, loss[None]
    return jax.lax.scan(
        lambda s, b: step(s, {**b, 'key': key}), state, batches)

  return train_chunk


def make_eval_chunk(model, loss_fn, counts_fn, prepare=prepare_lib.to_float):
  """(variables, batches (N, B, ...) with 'mask') -> summed counts (an
  evaluator's `counts_fn`, research/evaluators.py). Images (N, B, crops, ...)
  are scored by their crop-averaged softmax."""

  @jax.jit
  def eval_chunk(variables, batches):
    def counts(batch):
      logits = prepare_lib.crop_averaged_logits(model, variables,
                                                prepare(batch['image']))
      return counts_fn(logits, batch['label'], batch['mask'],
                       loss_fn(logits, batch['label']))
    return jax.tree.map(lambda x: x.sum(0), jax.lax.map(counts, batches))

  return eval_chunk
