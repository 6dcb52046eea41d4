r"""N processes of one run on this machine: the multi-host path, tested locally.

  python -m launch.multihost_local --num_processes=2 \
      --config=configs/mnist_nielsen.py --workdir=/tmp/mh [--config.a.b=v ...]

Each process gets one CPU device and joins JAX's multi-controller runtime
through a coordinator on 127.0.0.1 (collectives over loopback with gloo), as
the hosts of a TPU pod or GPU cluster would. Process 0 prints to this terminal;
process i logs to WORKDIR/process_i.log. If any process fails or --timeout
passes, all are killed (SIGKILL: JAX handles SIGTERM itself) and the exit code
is non-zero.
"""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from absl import app
from absl import flags

from research import xla_flags

_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 2, 'Processes to start.')
_TIMEOUT = flags.DEFINE_float('timeout', 0, 'Kill everything after this many '
                              'seconds; 0 waits forever.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The run\'s workdir.',
                               required=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def main(argv):
  workdir = pathlib.Path(_WORKDIR.value).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  address = f'127.0.0.1:{_free_port()}'
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=xla_flags.with_host_devices(
                 os.environ.get('XLA_FLAGS', ''), 1))
  procs = []
  for i in range(_NUM_PROCESSES.value):
    log = None if i == 0 else open(workdir / f'process_{i}.log', 'a')
    procs.append(subprocess.Popen(
        [sys.executable, '-m', 'research.main', *argv[1:],
         f'--workdir={workdir}', f'--coordinator_address={address}',
         f'--num_processes={_NUM_PROCESSES.value}', f'--process_id={i}'],
        env=env, stdout=log, stderr=log))
  deadline = time.time() + _TIMEOUT.value if _TIMEOUT.value else None
  while any(p.poll() is None for p in procs):
    # 143 and 130: a process stopped by SIGTERM or Ctrl-C after saving; the
    # others are finishing the same checkpoint, so they are left to it.
    failed = any(p.poll() not in (None, 0, 143, 130) for p in procs)
    if failed or (deadline and time.time() > deadline):
      for p in procs:
        if p.poll() is None:
          p.send_signal(signal.SIGKILL)
      codes = [p.wait() for p in procs]
      sys.exit(f'multihost_local: stopped all processes (exit codes {codes}); '
               + ('timed out' if not failed else f'see {workdir}/process_*.log'))
    time.sleep(0.2)
  codes = [p.returncode for p in procs]
  if any(codes):
    sys.exit(f'multihost_local: exit codes {codes}; see {workdir}/process_*.log')


if __name__ == '__main__':
  # Flags this launcher does not know (--config, --config.*) go to every process.
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
