"""One run per workdir: an OS lock on WORKDIR/.lock while a process uses it.

The lock is `fcntl.flock` on the file, which the kernel drops when the holder
exits however it exits (SIGKILL included), so a killed run's lock never
blocks the rerun; the file keeps the holder's host, pid and start time only
to name it in the refusal. Training takes it exclusively; the visualize
commands, which only read, share it with each other but not with training.
Paths on object stores (gs://) cannot be locked and are used unlocked.
"""
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket

from etils import epath

from research import errors

LOCK_NAME = '.lock'


class WorkdirError(errors.UserError, RuntimeError):
  """The workdir cannot be used; the message says what to do."""


def _holder(path) -> str:
  try:
    info = json.loads(path.read_text())
    return (f'{info["command"]} (pid {info["pid"]} on {info["host"]}, since '
            f'{info["since"]})')
  except (OSError, ValueError, KeyError):
    return 'another process'


def prepare(workdir) -> epath.Path:
  """The absolute workdir, created if need be; a path that is a file, or a
  folder this user cannot write, is refused in one paragraph."""
  from research import checkpoints  # pylint: disable=g-import-not-at-top
  workdir = checkpoints.absolute(workdir)
  if _is_remote(workdir):
    return workdir
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f'--workdir={workdir} is a file, not a folder: pass '
                       'a new folder (it is created) or a run\'s workdir.')
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'Cannot create --workdir={workdir} ({e.strerror}): '
                       'pass a folder you can write.') from e
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f'--workdir={workdir} is not writable by this user: '
                       'pass a folder you can write, or fix its permissions.')
  return workdir


def _is_remote(path) -> bool:
  return '://' in str(path)


def missing_root(workdir):
  """The outermost folder of `workdir`'s path that does not exist yet (what
  `prepare` will create), or None."""
  from research import checkpoints  # pylint: disable=g-import-not-at-top
  path = checkpoints.absolute(workdir)
  if _is_remote(path) or path.exists():
    return None
  while not path.parent.exists():
    path = path.parent
  return path


def remove_if_unused(workdir, created=None):
  """Removes a workdir that holds nothing but its lock file, and the empty
  folders above it up to `created` (what `prepare` made)."""
  workdir = epath.Path(workdir)
  if _is_remote(workdir) or not workdir.is_dir() or created is None:
    return
  if {p.name for p in workdir.iterdir()} <= {LOCK_NAME}:
    (workdir / LOCK_NAME).unlink(missing_ok=True)
    workdir.rmdir()
    path = workdir.parent
    while (path != epath.Path(created).parent and path.is_dir()
           and not any(path.iterdir())):
      path.rmdir()
      path = path.parent


@contextlib.contextmanager
def lock(workdir, command: str, shared: bool = False, enabled: bool = True):
  """Holds WORKDIR/.lock (exclusive, or `shared` with other readers) for the
  block; WorkdirError naming the holder if another process has it."""
  if _is_remote(workdir) or not enabled:
    yield
    return
  path = epath.Path(workdir) / LOCK_NAME
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise WorkdirError(f'Cannot create the lock {path} ({e.strerror}): pass '
                       'a --workdir you can write.') from e
  try:
    try:
      fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                  | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
        raise
      raise WorkdirError(
          f'{workdir} is in use by {_holder(path)}. One run per workdir: '
          'wait for it to finish (or stop it), or pass another --workdir.'
      ) from None
    # Readers share the file: the last one to arrive is the one named.
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({
        'command': command, 'pid': os.getpid(), 'host': socket.gethostname(),
        'since': datetime.datetime.now().isoformat(timespec='seconds'),
    }).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock
