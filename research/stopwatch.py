"""Where a run's time goes: compiling, training, feeding input, evaluating
and saving checkpoints.

One object keeps all of it (as big_vision's `Chrono` does), saved with every
checkpoint and restored on resume, so results.json reports the whole run's
figures however often it was interrupted (and a rerun of a finished run
reports what the run measured, not zeros).

Training time is the wall time of the loop's chunks, compiling excluded. The
next chunk's input is fetched while the devices run the current one, so the
share of training time spent fetching input bounds how long the devices can
have waited for it. Evaluation and checkpoint time is the wall time the loop
spends on them (for a checkpoint: until Orbax has taken the arrays, and at the
end until the last save is committed).
"""
import contextlib
import time

# The keys of results.json and metrics.jsonl that measure time: the only ones
# in which two runs of the same config (a resumed one, seeds trained together)
# may differ.
TIMINGS = ('train_seconds', 'compile_seconds', 'examples_per_second',
           'data_wait_share', 'eval_seconds', 'checkpoint_seconds')


class Stopwatch:

  def __init__(self, saved: dict | None = None):
    saved = saved or {}
    self.train_seconds = saved.get('train_seconds', 0.0)
    self.compile_seconds = saved.get('compile_seconds', 0.0)
    self.data_seconds = saved.get('data_seconds', 0.0)
    self.examples = saved.get('examples', 0)
    self.eval_seconds = saved.get('eval_seconds', 0.0)
    self.checkpoint_seconds = saved.get('checkpoint_seconds', 0.0)

  def state(self) -> dict:
    return {'train_seconds': self.train_seconds,
            'compile_seconds': self.compile_seconds,
            'data_seconds': self.data_seconds, 'examples': self.examples,
            'eval_seconds': self.eval_seconds,
            'checkpoint_seconds': self.checkpoint_seconds}

  @contextlib.contextmanager
  def _adding_to(self, name: str):
    start = time.perf_counter()
    yield
    setattr(self, name, getattr(self, name) + time.perf_counter() - start)

  def compiling(self):
    return self._adding_to('compile_seconds')

  def input(self):
    return self._adding_to('data_seconds')

  def evaluating(self):
    return self._adding_to('eval_seconds')

  def saving(self):
    return self._adding_to('checkpoint_seconds')

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
