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

  def __init__(self):
    self.signum = None
    self._calls = 0
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

  def reached(self) -> int | None:
    """The signal that asks to stop here, or None; every process asks after
    the same compiled chunks."""
    if self.signum is not None:
      return self.signum
    if jax.process_count() == 1:
      return None
    # The notifier agrees on the next counter after the notice and answers
    # yes only to exactly that one, so it gets consecutive counters: one per
    # call, not the step, which moves by a chunk at a time.
    self._calls += 1
    if multihost_utils.reached_preemption_sync_point(self._calls):
      return signal.SIGTERM
    return None

  def close(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
