"""Orbax checkpoints of the train state and the loop's own small state.

Saves are atomic (Orbax commits by rename), so a run killed mid-save leaves a
temporary directory that restore ignores and the previous checkpoint is used.
"""
import errno
import logging
import shutil
import sys

import jax
import orbax.checkpoint as ocp
from etils import epath

from research import errors


# Room a save needs beyond its arrays: Orbax's metadata files.
SAVE_MARGIN_BYTES = 1 << 20


class CheckpointError(errors.UserError, RuntimeError):
  """A saved checkpoint cannot be restored; the message says what to do."""


def absolute(path) -> epath.Path:
  """Orbax needs absolute paths; a relative local one is resolved, gs:// kept."""
  path = epath.Path(path)
  return path if path.is_absolute() else path.resolve()


class Checkpointer:
  """Every host calls save/restore; Orbax coordinates who writes what."""

  def __init__(self, directory, keep: int):
    self.manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                                        create=True))

  def latest_step(self):
    return self.manager.latest_step()

  def save(self, step: int, state, loop: dict):
    """Saves (asynchronously) unless the disk lacks room for it: then
    OSError(ENOSPC) before anything is written, so a full disk never leaves
    a half-written checkpoint (or Orbax's tracebacks from its threads)."""
    directory = self.manager.directory
    if '://' not in str(directory):
      need = sum(getattr(x, 'nbytes', 0) for x in jax.tree.leaves(state))
      free = shutil.disk_usage(directory).free
      if free < need + SAVE_MARGIN_BYTES:
        raise OSError(errno.ENOSPC, f'No space left on device: {free:,} bytes '
                      f'free, the checkpoint of step {step} needs about '
                      f'{need + SAVE_MARGIN_BYTES:,}', str(directory))
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)),
                      force=True)

  def restore(self, step: int, like_state):
    """Returns (state, loop) with state placed like `like_state`'s arrays."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    _ignore_reads_left_in_flight()
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax/TensorStore raise many types for bad files
      raise _unreadable(self.manager.directory / str(step), e) from e
    return restored.state, restored.loop

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _ignore_reads_left_in_flight():
  """When a restore fails, TensorStore reads still in flight end in Orbax's
  event loop, already closed, and their callbacks print "RuntimeError: Event
  loop is closed" (through sys.excepthook or sys.unraisablehook) around the
  paragraph the command prints. That error says nothing about the
  checkpoint; any other still reaches the hooks. Idempotent."""
  if getattr(sys.excepthook, 'ignores_closed_loop', False):
    return
  closed = lambda value: (isinstance(value, RuntimeError)
                          and str(value) == 'Event loop is closed')
  excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

  def on_exception(kind, value, tb):
    if not closed(value):
      excepthook(kind, value, tb)

  def on_unraisable(info):
    if not closed(info.exc_value):
      unraisablehook(info)
  on_exception.ignores_closed_loop = True
  sys.excepthook, sys.unraisablehook = on_exception, on_unraisable


class _DropReportsOn(logging.Filter):
  """Drops log records whose message or exception names `path`."""

  def __init__(self, path):
    super().__init__()
    self.path = str(path)

  def filter(self, record):
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
      text += str(record.exc_info[1])
    return self.path not in text


def _unreadable(path, error) -> CheckpointError:
  """The paragraph for an unreadable checkpoint. The reads of its other
  arrays, still in flight, fail the same way; asyncio logs each ("Task
  exception was never retrieved", with a traceback) when it is collected,
  around the paragraph: those records are dropped, others still print."""
  for handler in logging.getLogger().handlers:
    handler.addFilter(_DropReportsOn(path))
  return CheckpointError(
      f'The checkpoint {path} cannot be read ({type(error).__name__}: '
      f'{str(error)[:300]}). It is corrupt, truncated or from another model. '
      'Delete that folder to fall back to the previous checkpoint, or use '
      'a new --workdir.')


def latest_step(workdir) -> int | None:
  """The step of the newest finished checkpoint in workdir, None if none."""
  path = absolute(workdir) / 'checkpoints'
  if not path.is_dir():
    return None
  with ocp.CheckpointManager(path) as manager:
    return manager.latest_step()


def load_latest(workdir) -> tuple[dict, int]:
  """The newest checkpoint's train state as nested dicts of arrays on this
  process's first device, and its step, for code that reads a finished run
  (tests, visualization), whatever processes and devices saved it."""
  path = absolute(workdir) / 'checkpoints'
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {path}: train a run with '
                              f'--workdir={workdir} first.')
    _ignore_reads_left_in_flight()
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_on_one_device(path / str(step)))))
    except Exception as e:  # Orbax/TensorStore raise many types for bad files
      raise _unreadable(path / str(step), e) from e
  return restored.state, step


def _on_one_device(step_dir: epath.Path):
  """The saved state's shapes and dtypes, placed on one local device: a
  checkpoint written by several processes restores only with a target
  (Orbax refuses the saved topology elsewhere)."""
  metadata = ocp.StandardCheckpointHandler().metadata(step_dir / 'state')
  tree = getattr(metadata, 'item_metadata', metadata)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      getattr(tree, 'tree', tree))
