"""research/host_memory.py: the entry points make malloc keep freed memory,
so a training step's buffers do not page-fault anew at every step."""
import os
import subprocess
import sys

from research import host_memory
from tests.helpers import REPO

# Through libc, as XLA's runtime allocates a step's buffers: sixteen 1 MB
# buffers allocated, written and freed, ten times; the minor page faults of
# the last nine, per round.
_FAULTS = '''
import ctypes, ctypes.util, resource
libc = ctypes.CDLL(ctypes.util.find_library('c'))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(10):
  if i == 1:
    start = faults()
  buffers = [libc.malloc(1 << 20) for _ in range(16)]
  for buffer in buffers:
    ctypes.memset(buffer, 1, 1 << 20)
  for buffer in buffers:
    libc.free(buffer)
print((faults() - start) // 9)
'''
PAGES = (16 << 20) // os.sysconf('SC_PAGE_SIZE')  # a round's pages


def _faults_per_round(module: str, **env) -> int:
  environ = {k: v for k, v in os.environ.items()
             if k not in host_memory._USER_SETTINGS}
  out = subprocess.run([sys.executable, '-c', f'import {module}\n{_FAULTS}'],
                       cwd=REPO, env={**environ, **env}, capture_output=True,
                       text=True, check=True).stdout
  return int(out.split()[-1])


def test_the_entry_points_keep_freed_buffers_and_the_library_does_not():
  assert _faults_per_round('research.main') < PAGES // 20
  # Importing the library leaves malloc alone: each round faults anew.
  assert _faults_per_round('research.train') > PAGES // 2


def test_the_users_malloc_settings_decide():
  assert not host_memory.keep_freed_memory({'MALLOC_MMAP_THRESHOLD_': '1'})
  assert _faults_per_round('research.main',
                           MALLOC_MMAP_THRESHOLD_='131072') > PAGES // 2
