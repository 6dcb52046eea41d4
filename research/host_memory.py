"""glibc malloc settings under which XLA CPU's training steps run fastest.

XLA's CPU runtime allocates each step's temporary buffers anew. glibc
serves large allocations with fresh mmap'd pages and returns freed memory to
the system, so every step touched its buffers' pages for the first time: about
4,000 minor page faults a step for the 11-layer street-number net, a quarter
of its step time on this project's virtual machines (results/README.md,
2026-12-07). `keep_freed_memory()` raises malloc's mmap and trim thresholds so
freed buffers stay in the heap and are reused. It is a libc call, made at
start-up by the same entry points that set XLA's flags (`xla_flags.apply`);
it does nothing where libc has no `mallopt` (macOS) or where the user set
malloc's own environment variables (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES), which then decide.
"""
import ctypes
import ctypes.util
import os

THRESHOLD = 1 << 30  # bytes: allocations below it come from the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_USER_SETTINGS = ('MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_',
                  'GLIBC_TUNABLES')


def keep_freed_memory(environ=os.environ) -> bool:
  """Keeps freed memory for reuse; True if the setting was made."""
  if any(name in environ for name in _USER_SETTINGS):
    return False
  name = ctypes.util.find_library('c')
  libc = ctypes.CDLL(name) if name else None
  if libc is None or not hasattr(libc, 'mallopt'):
    return False
  return bool(libc.mallopt(_M_MMAP_THRESHOLD, THRESHOLD)
              and libc.mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
