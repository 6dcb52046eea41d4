"""The rules the training loop applies after each evaluation."""
from absl import logging

from research import optim
from research import watch


class StopRules:
  """What the loop does after each evaluation: keep the best evaluation,
  stop early when `config.early_stopping.metric` has not improved for its
  patience, lower the learning rate on a plateau (research/optim.py's
  Plateau) and stop once that multiplier falls below its floor.

  Its counters are a JSON dict (`state()`), saved with every checkpoint, so
  a resumed run keeps counting where the interrupted one was.
  """

  def __init__(self, config, saved: dict | None = None):
    saved = saved or {}
    self.config = config
    self.early = watch.MetricWatch(**config.early_stopping)
    self.plateau = optim.Plateau(config.optimizer)
    self.best = saved.get('best')
    self.stopped = saved.get('stopped_early', False)
    self._early = saved.get('early_stopping', {})
    self._plateau = saved.get('plateau', {})

  def state(self) -> dict:
    return {'best': self.best, 'stopped_early': self.stopped,
            'early_stopping': self._early, 'plateau': self._plateau}

  def after_eval(self, step: int, metrics: dict, opt_state, sharding):
    """Returns the optimizer state, its learning-rate multiplier lowered if
    the metric has reached a plateau; sets `best` and `stopped`."""
    self._early, improved, out_of_patience = self.early.update(self._early,
                                                               metrics)
    if improved:
      self.best = {'step': step, **metrics}
    if out_of_patience:
      self.stopped = True
      logging.info('Early stop at step %d: no better %s in %d evals.', step,
                   self.config.early_stopping.metric,
                   self.config.early_stopping.patience)
    self._plateau, opt_state, floor = self.plateau.update(
        self._plateau, metrics, opt_state, sharding)
    if floor:
      self.stopped = True
      logging.info('Stop at step %d: the learning-rate multiplier fell below '
                   '%g.', step, self.config.optimizer.plateau.min_scale)
    return opt_state
