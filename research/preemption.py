"""SIGTERM (what a preempted TPU VM or a Slurm job receives) and SIGINT
(Ctrl-C) as stop requests.

The loop asks after each compiled chunk; on yes it saves a checkpoint at that
step and stops, and the command exits 128 + the signal's number (143, 130),
as the shell reports a process the signal ended. On a multi-process run
JAX's own preemption notifier (started by jax.distributed.initialize)
answers for SIGTERM, so every host stops at the same step; Ctrl-C keeps its
default there.
"""
import signal
import threading

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """Stopped by a signal after saving a checkpoint; rerun to resume."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


class Notice:

  def __init__(self, step: int):
    self.signum = None
    self._asked = step  # the last counter passed to JAX's sync point
    self._previous = {}
    if threading.current_thread() is not threading.main_thread():
      return
    # On multi-process runs JAX's notifier owns SIGTERM, and a Ctrl-C that
    # reached one host only could not stop the others at the same step.
    for signum in SIGNALS if jax.process_count() == 1 else ():
      self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum, frame):
    del frame
    self.signum = signum

  def reached(self, step: int) -> int | None:
    """The signal that asks to stop at `step`, or None; every process asks
    after the same compiled chunks."""
    if self.signum is not None:
      return self.signum
    if jax.process_count() == 1:
      return None
    # JAX's notifier sets the stop point one past the largest counter any
    # process last passed, and answers yes to exactly that counter. Orbax's
    # save passes the step too, so the counter is the step, and every step
    # of the chunk is asked: the point may fall inside it, and then every
    # process stops at the chunk's end.
    reached = False
    for counter in range(self._asked + 1, step + 1):
      reached |= multihost_utils.reached_preemption_sync_point(counter)
    self._asked = max(self._asked, step)
    return signal.SIGTERM if reached else None

  def close(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
