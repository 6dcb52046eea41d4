"""Where a run's numbers go: DIR/metrics.jsonl, TensorBoard events and the log.

Only process 0 writes files. Both files are append-only while the run goes
and crash-safe: each row or event is flushed to the OS as it is written, so
what a checkpoint at step S saw is on disk before the checkpoint is; on
resume from S each file is cut back to steps <= S (a torn last line or record
from a crash mid-write is dropped, with a warning) by writing it aside,
fsyncing and renaming it over the original, so a crash there cannot empty
it; the resumed run then writes the later steps again, identically. So
TensorBoard shows one curve, whatever was interrupted.

The events are TensorBoard's own format (TFRecords of `Event` protos, written
with tensorboard's RecordWriter) holding plain scalars (`simple_value`),
which every TensorBoard reader, `EventAccumulator.Scalars()` included,
understands; writing them needs no TensorFlow.
"""
import errno
import io
import json
import logging as std_logging
import os
import time

import jax
from absl import logging
from etils import epath

from research import errors

EVENTS_NAME = 'events.out.tfevents.research'  # one file per run


def disk_full(error: BaseException) -> bool:
  """Whether `error` or one it wraps (Orbax and TensorStore wrap OS errors
  in their own) is ENOSPC."""
  return any((isinstance(e, OSError) and e.errno == errno.ENOSPC)
             or 'No space left on device' in str(e)
             for e in errors.causes(error))


class QuietLibraries(std_logging.Filter):
  """Keeps Orbax's and TFDS's INFO chatter out of the progress display, and
  the tracebacks they log on the way to raising (a full disk, an unreadable
  checkpoint): the exception reaches the command, which says it in one
  paragraph, or prints its traceback if it is a bug of ours.
  `logging.get_absl_handler().addFilter(QuietLibraries())`."""

  def filter(self, record):
    library = any(part in record.pathname
                  for part in ('/orbax/', '/tensorflow_datasets/'))
    if library and record.exc_info:
      return False
    return record.levelno > std_logging.INFO or not library


def replace_atomically(path: epath.Path, data: bytes):
  """Writes `data` to `path` so a crash leaves the old file or the new one:
  a sibling file first, fsynced, then renamed over `path`."""
  aside = path.parent / f'.{path.name}.tmp'
  with open(aside, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(aside, path)


def read_rows(path: epath.Path) -> list[dict]:
  """metrics.jsonl's rows; a torn last line (a crash mid-write) is dropped
  with a warning, a bad line elsewhere is an error naming it."""
  if not path.exists():
    return []
  lines = path.read_text().split('\n')
  rows = []
  for number, line in enumerate(lines, 1):
    if not line:
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number == len(lines):  # no newline after it: cut mid-write
        logging.warning('%s: dropped a torn last line (%d bytes), left by a '
                        'run stopped mid-write.', path, len(line))
        break
      raise ValueError(f'{path} line {number} is not JSON ({e}); it was '
                       'edited or damaged. Delete the line or the file.'
                       ) from e
  return rows


def _events(path) -> list:
  """The intact Event records of an events file, in order; reading stops
  at the first torn or corrupt record."""
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  if not path.exists():
    return []
  out = []
  for record in event_file_loader.RawEventFileLoader(str(path)).Load():
    out.append(event_pb2.Event.FromString(record))
  return out


class MetricsLog:
  """metrics.jsonl and the TensorBoard events of a run in `workdir`, cut
  back to `resumed_step` (None: a fresh start, keeping nothing)."""

  def __init__(self, workdir: epath.Path, resumed_step: int | None):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    keep = lambda step: resumed_step is not None and step <= resumed_step
    self.path = workdir / 'metrics.jsonl'
    rows = read_rows(self.path)
    kept = [r for r in rows if keep(r['step'])]
    if self.path.exists() and (kept != rows or not self._ends_clean()):
      replace_atomically(self.path, ''.join(
          json.dumps(r) + '\n' for r in kept).encode())
    self.events_path = workdir / EVENTS_NAME
    events = _events(self.events_path)
    kept_events = [e for e in events if e.HasField('file_version')
                   or keep(e.step)]
    if not kept_events:
      kept_events = [event_pb2.Event(wall_time=time.time(),
                                     file_version='brain.Event:2')]
    if len(kept_events) != len(events) or not self.events_path.exists():
      buffer = io.BytesIO()
      writer = record_writer.RecordWriter(buffer)
      for event in kept_events:
        writer.write(event.SerializeToString())
      replace_atomically(self.events_path, buffer.getvalue())
    self._rows = open(self.path, 'a')
    self._events = record_writer.RecordWriter(open(self.events_path, 'ab'))

  def _ends_clean(self) -> bool:
    with open(self.path, 'rb') as f:
      f.seek(0, os.SEEK_END)
      if not f.tell():
        return True
      f.seek(-1, os.SEEK_END)
      return f.read(1) == b'\n'

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    self._rows.write(json.dumps({'step': step, **metrics}) + '\n')
    self._rows.flush()
    summary = self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
        for k, v in metrics.items() if isinstance(v, (int, float))])
    self._events.write(self._event_pb2.Event(
        wall_time=time.time(), step=step, summary=summary).SerializeToString())
    self._events.flush()

  def close(self):
    """Closes both files; a failure to flush them (a full disk) is logged,
    not raised, so it does not hide the error that ended the run."""
    if not self.enabled:
      return
    for f in (self._rows, self._events):
      try:
        f.close()
      except OSError as e:
        logging.warning('Could not finish writing %s: %s', self.path.parent, e)


def progress(step: int, total: int, steps_per_epoch: int, loss: float,
             chrono, examples_left: int):
  """One line: where the run is, its loss, its speed and how long is left
  (`chrono`: the run's research/stopwatch.Stopwatch)."""
  logging.info('step %d/%d (epoch %.2f) loss %.4f | %s examples/s | '
               'input %.0f%% of time | evals %s, saves %s | %s left', step,
               total, step / steps_per_epoch, loss,
               f'{chrono.examples_per_second:,.0f}',
               100 * chrono.data_wait_share, _duration(chrono.eval_seconds),
               _duration(chrono.checkpoint_seconds),
               _duration(chrono.seconds_left(examples_left)))


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'
