"""Orbax checkpoints of the train state and the loop's own small state.

Saves are atomic (Orbax commits by rename), so a run killed mid-save leaves a
temporary directory that restore ignores and the previous checkpoint is used.
"""
import jax
import orbax.checkpoint as ocp
from etils import epath


class CheckpointError(RuntimeError):
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
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)),
                      force=True)

  def restore(self, step: int, like_state):
    """Returns (state, loop) with state placed like `like_state`'s arrays."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax/TensorStore raise many types for bad files
      path = self.manager.directory / str(step)
      raise CheckpointError(
          f'The checkpoint {path} cannot be read ({type(e).__name__}: '
          f'{str(e)[:300]}). It is corrupt, truncated or from another model. '
          'Delete that folder to resume from the previous checkpoint, or use '
          'a new --workdir.') from e
    return restored.state, restored.loop

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def latest_step(workdir) -> int | None:
  """The step of the newest finished checkpoint in workdir, None if none."""
  path = absolute(workdir) / 'checkpoints'
  if not path.is_dir():
    return None
  with ocp.CheckpointManager(path) as manager:
    return manager.latest_step()


def load_latest(workdir) -> tuple[dict, int]:
  """The newest checkpoint's train state as nested dicts of arrays, and its
  step, for code that reads a finished run (tests, visualization)."""
  path = absolute(workdir) / 'checkpoints'
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {path}: train a run with '
                              f'--workdir={workdir} first.')
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
  return restored.state, step
