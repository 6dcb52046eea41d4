"""Where a run's time goes: compiling, training, and feeding input.

One object keeps all of it (as big_vision's `Chrono` does), saved with every
checkpoint and restored on resume, so results.json reports the whole run's
figures however often it was interrupted (and a rerun of a finished run
reports what the run measured, not zeros).

Training time is the wall time of the loop's chunks, compiling excluded. The
next chunk's input is fetched while the devices run the current one, so the
share of training time spent fetching input bounds how long the devices can
have waited for it.
"""
import contextlib
import time


class Stopwatch:

  def __init__(self, saved: dict | None = None):
    saved = saved or {}
    self.train_seconds = saved.get('train_seconds', 0.0)
    self.compile_seconds = saved.get('compile_seconds', 0.0)
    self.data_seconds = saved.get('data_seconds', 0.0)
    self.examples = saved.get('examples', 0)

  def state(self) -> dict:
    return {'train_seconds': self.train_seconds,
            'compile_seconds': self.compile_seconds,
            'data_seconds': self.data_seconds, 'examples': self.examples}

  @contextlib.contextmanager
  def compiling(self):
    start = time.perf_counter()
    yield
    self.compile_seconds += time.perf_counter() - start

  @contextlib.contextmanager
  def input(self):
    start = time.perf_counter()
    yield
    self.data_seconds += time.perf_counter() - start

  @contextlib.contextmanager
  def chunk(self, examples: int):
    """Times one chunk of training steps (`examples` of them)."""
    start, compiled = time.perf_counter(), self.compile_seconds
    yield
    self.train_seconds += (time.perf_counter() - start
                           - (self.compile_seconds - compiled))
    self.examples += examples

  @property
  def examples_per_second(self) -> float:
    return self.examples / max(self.train_seconds, 1e-9)

  @property
  def data_wait_share(self) -> float:
    return self.data_seconds / max(self.train_seconds, 1e-9)

  def seconds_left(self, examples_left: int) -> float:
    return examples_left / max(self.examples_per_second, 1e-9)
