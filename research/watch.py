"""Has a validation metric improved in the last N evaluations?

Shared by early stopping and the plateau learning-rate schedule. Its counters
are a small JSON dict kept in the loop state, so they survive a resume.
"""


class MetricWatch:

  def __init__(self, metric: str, mode: str, patience: int,
               min_delta: float = 0.0):
    self.metric, self.patience, self.min_delta = metric, patience, min_delta
    self.sign = 1 if mode == 'max' else -1

  def update(self, counters: dict, metrics: dict) -> tuple[dict, bool, bool]:
    """Returns (counters, improved, out_of_patience) after one evaluation.

    Running out of patience restarts the wait, so a caller that reacts (e.g.
    lowers the learning rate) waits `patience` evaluations again.
    """
    value = metrics.get(self.metric)
    best = counters.get('best')
    if value is None:
      return counters, False, False
    # An improvement smaller than min_delta is noise, as in Keras'
    # EarlyStopping: it neither moves the best value nor resets the wait.
    if best is None or self.sign * (value - best) > self.min_delta:
      return {'best': value, 'waited': 0}, True, False
    waited = counters.get('waited', 0) + 1
    if self.patience and waited >= self.patience:
      return {'best': best, 'waited': 0}, False, True
    return {'best': best, 'waited': waited}, False, False

