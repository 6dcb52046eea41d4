"""SIGTERM, what a preempted TPU VM or a Slurm job receives, as a stop request.

The loop asks after each compiled chunk; on yes it saves a checkpoint at that
step and stops. On a multi-process run JAX's own preemption notifier (started by
jax.distributed.initialize) answers, so every host stops at the same step.
"""
import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Stopped by SIGTERM after saving a checkpoint; rerun to resume."""


class Notice:

  def __init__(self):
    self.requested = False
    self._previous = None
    if (jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
