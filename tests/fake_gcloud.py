"""A stand-in for the gcloud commands launch/tpu.py runs, for tests.

Installed as `gcloud` on PATH by tests/test_tpu_failures.py. It keeps one VM's
state in $FAKE_GCLOUD_DIR/vm, logs every call to $FAKE_GCLOUD_DIR/calls, and
plays $FAKE_GCLOUD_SCENARIO:
  ok       every step succeeds;
  quota    create fails as Cloud TPU does when the quota is spent;
  preempt  the first run is preempted once it has saved a checkpoint (the
           VM gets SIGTERM, as a spot VM does, then goes PREEMPTED);
  preempt_always  every run is.
The run's command runs here, for real: gs://bucket/ is the folder
$FAKE_GCLOUD_DIR/gcs/, the VM's ~/research this checkout.
"""
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
HOME = pathlib.Path(os.environ['FAKE_GCLOUD_DIR'])
SCENARIO = os.environ.get('FAKE_GCLOUD_SCENARIO', 'ok')
VM = HOME / 'vm'


def local(path: str) -> str:
  return path.replace('gs://bucket/', f'{HOME / "gcs"}/')


def fail(message: str, code: int = 1):
  print(message, file=sys.stderr)
  sys.exit(code)


def run_remote(command: str) -> int:
  """The run step's command, here: research.main with gs:// mapped."""
  argv = shlex.split(command)
  argv = argv[argv.index('.venv/bin/python') + 1:]
  argv = [sys.executable] + [local(a) for a in argv]
  preempt = SCENARIO == 'preempt_always' or (
      SCENARIO == 'preempt' and not (HOME / 'preempted_once').exists())
  proc = subprocess.Popen(argv, cwd=REPO)
  if not preempt:
    return proc.wait()
  workdir = pathlib.Path(next(a for a in argv if a.startswith('--workdir='))
                         .split('=', 1)[1])
  while not any(p.name.isdigit() for p in (workdir / 'checkpoints').glob('*')):
    if proc.poll() is not None:
      fail('the run ended before it could be preempted')
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  proc.wait()
  (HOME / 'preempted_once').touch()
  VM.write_text('PREEMPTED')
  fail('Connection to 10.0.0.2 closed by remote host.', 255)


def main(args: list) -> int:
  with open(HOME / 'calls', 'a') as log:
    log.write(shlex.join(args) + '\n')
  if args[:4] == ['compute', 'tpus', 'accelerator-types', 'list']:
    print('v4-8\nv4-32')
    return 0
  if args[:2] == ['storage', 'cp']:
    shutil.copy(local(args[2]), args[3])
    return 0
  verb = args[3]
  if verb == 'create':
    if SCENARIO == 'quota':
      fail("ERROR: (gcloud.compute.tpus.tpu-vm.create) Quota exceeded for "
           "quota metric 'TPUV4sPreemptiblePodPerProjectPerZoneForTPUAPI' and "
           "limit 'TPUV4sPreemptiblePodPerProjectPerZoneForTPUAPI per "
           "project per zone' of service 'tpu.googleapis.com'.")
    if VM.exists():
      fail(f'ERROR: (gcloud.compute.tpus.tpu-vm.create) ALREADY_EXISTS: '
           f'{args[4]} already exists')
    VM.write_text('READY')
    return 0
  if verb == 'describe':
    if not VM.exists():
      fail('ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: '
           f'{args[4]} was not found')
    print(VM.read_text())
    return 0
  if verb == 'delete':
    VM.unlink(missing_ok=True)
    return 0
  if not VM.exists() or VM.read_text() != 'READY':
    fail(f'ERROR: (gcloud.compute.tpus.tpu-vm.{verb}) the VM is not READY', 255)
  if verb == 'ssh' and 'research.main' in args[-1]:
    return run_remote(args[-1])
  return 0  # scp, the install step


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
