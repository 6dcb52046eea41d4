"""Optimizer and learning-rate schedule from `config.optimizer`, built on optax."""
import jax
import jax.numpy as jnp
import optax

from research import configlib
from research import watch

SCHEDULES = ('constant', 'cosine', 'exponential', 'piecewise')


def schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  s, lr = config.schedule, config.learning_rate
  configlib.choose('schedule', s.name, SCHEDULES)
  to_steps = lambda epochs: max(1, round(epochs * steps_per_epoch))
  warmup = round(s.warmup_epochs * steps_per_epoch)
  if s.name == 'constant':
    main = optax.constant_schedule(lr)
  elif s.name == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  elif s.name == 'exponential':  # staircase, e.g. GoogLeNet: -4% every 8 epochs
    main = optax.exponential_decay(lr, to_steps(s.decay_every_epochs),
                                   s.decay_rate, staircase=True)
  else:
    if len(s.boundaries_epochs) != len(s.scales):
      raise configlib.ConfigError(
          'config.optimizer.schedule.boundaries_epochs and .scales must have '
          f'equal lengths; got {s.boundaries_epochs} and {s.scales}.')
    main = optax.piecewise_constant_schedule(
        lr, {to_steps(b): f for b, f in zip(s.boundaries_epochs, s.scales)})
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _kernels_only(params):
  """Weight decay applies to weights, not biases (Nielsen ch.3, eq. 93)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def create(config, steps_per_epoch: int, total_steps: int):
  """Returns (optax transformation, learning-rate schedule)."""
  lr = schedule(config, steps_per_epoch, total_steps)
  builders = {
      'sgd': lambda: optax.sgd(lr),
      'momentum': lambda: optax.sgd(lr, momentum=config.momentum),
      'nesterov': lambda: optax.sgd(lr, momentum=config.momentum, nesterov=True),
      'adam': lambda: optax.adam(lr, config.b1, config.b2, config.eps),
      'adamw': lambda: optax.adamw(lr, config.b1, config.b2, config.eps,
                                   weight_decay=config.weight_decay,
                                   mask=_kernels_only),
      'rmsprop': lambda: optax.rmsprop(lr, momentum=config.momentum,
                                       eps=config.eps),
  }
  configlib.choose('optimizer', config.name, builders)
  tx = builders[config.name]()
  if config.weight_decay and config.name != 'adamw':  # adamw decays decoupled
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay,
                                               mask=_kernels_only), tx)
  if config.plateau.factor < 1:
    # A multiplier kept in the optimizer state (so checkpoints carry it) that
    # the training loop lowers between steps; see `Plateau`.
    tx = optax.chain(tx, optax.inject_hyperparams(optax.scale)(step_size=1.0))
  return tx, lr


class Plateau:
  """Lowers the learning-rate multiplier when a metric stops improving.

  Decides on the host at eval time; its counters live in the loop state that is
  saved with each checkpoint, the multiplier itself in the optimizer state.
  """

  def __init__(self, config):
    self.config = config.plateau
    self.enabled = self.config.factor < 1
    self.watch = watch.MetricWatch(self.config.metric, self.config.mode,
                                   self.config.patience, self.config.min_delta)

  @staticmethod
  def scale(opt_state) -> float:
    return float(opt_state[-1].hyperparams['step_size'])

  def update(self, counters: dict, metrics: dict, opt_state, sharding):
    """Returns (counters, opt_state, stop) after one evaluation."""
    if not self.enabled:
      return counters, opt_state, False
    counters, _, lower = self.watch.update(counters, metrics)
    if not lower:
      return counters, opt_state, False
    scale = self.scale(opt_state) * self.config.factor
    injected = opt_state[-1]
    hyperparams = dict(injected.hyperparams)
    hyperparams['step_size'] = jax.device_put(
        jnp.asarray(scale, hyperparams['step_size'].dtype), sharding)
    opt_state = (*opt_state[:-1], injected._replace(hyperparams=hyperparams))
    return counters, opt_state, scale < self.config.min_scale
