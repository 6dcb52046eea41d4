"""`config.profile`: a jax.profiler trace of a few training steps.

The trace starts before the first chunk of steps that compiles nothing (so it
shows the steps, not XLA compiling them) and stops after the chunk that
completes `steps` traced steps; chunks are whole, so a few more may be traced.
It is written to WORKDIR/profile by process 0: TensorBoard's profile plugin
reads that folder, and ui.perfetto.dev opens the perfetto_trace.json.gz in it.
"""
import pathlib

import jax
from absl import logging


class Trace:

  def __init__(self, workdir: pathlib.Path, steps: int, enabled: bool = True):
    self.directory = workdir / 'profile'
    self.steps_left = steps if enabled else 0
    self.running = False

  def before_chunk(self, compiles: bool):
    if self.steps_left > 0 and not self.running and not compiles:
      jax.profiler.start_trace(str(self.directory),
                               create_perfetto_trace=True)
      self.running = True

  def after_chunk(self, steps: int):
    if self.running:
      self.steps_left -= steps
      if self.steps_left <= 0:
        self.stop()

  def stop(self):
    if self.running:
      jax.profiler.stop_trace()
      self.running = False
      logging.info('Wrote a profile of the training steps to %s.',
                   self.directory)
