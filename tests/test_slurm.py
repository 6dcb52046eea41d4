"""launch/slurm.sbatch and launch.sweep --launcher=slurm against a real
one-node Slurm (tests/slurm_single_node.sh: Debian's slurmctld, slurmd and
munge), started here and stopped at the end. README's `--dist loadfile` keeps
both tests on one worker, so one cluster serves both."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO, read_jsonl, run_cli
from tests.test_resume import assert_same_run

pytestmark = pytest.mark.slow

ARGS = ['--config.num_epochs=4', '--config.log_every_steps=50']
CONFIG = 'configs/mnist_nielsen.py:test'
ENDED = ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL',
         'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED')


@pytest.fixture(scope='module')
def slurm():
  """A running one-node cluster: this machine's, or one started here."""
  if os.geteuid() != 0:
    pytest.skip('starting Slurm needs root (CI runs as root)')
  ping = subprocess.run(['scontrol', 'ping'], capture_output=True, text=True,
                        check=False) if _installed() else None
  if ping is not None and ' is UP' in ping.stdout:
    yield
    return
  proc = subprocess.run(['bash', str(REPO / 'tests' / 'slurm_single_node.sh')],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  pids = [int(p) for p in proc.stdout.strip().splitlines()[-1].split()[1:]]
  try:
    yield
  finally:
    for pid in pids:
      os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
      time.sleep(0.2)


def _installed() -> bool:
  return subprocess.run(['sh', '-c', 'command -v scontrol'],
                        capture_output=True, check=False).returncode == 0


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


def job(job_id: str) -> dict:
  proc = subprocess.run(['scontrol', 'show', 'job', job_id],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, f'scontrol show job {job_id}: {proc.stderr}'
  return dict(re.findall(r'(\w+)=(\S+)', proc.stdout))


def wait_for(job_id: str, timeout: float = 420) -> dict:
  deadline = time.monotonic() + timeout
  while (info := job(job_id))['JobState'] not in ENDED:
    assert time.monotonic() < deadline, info
    time.sleep(1)
  return info


def sbatch(*args, cwd=REPO) -> str:
  proc = subprocess.run(['sbatch', '--parsable', *args], cwd=cwd,
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.strip().split(';')[0]


def test_two_tasks_train_as_one_process_with_two_devices_and_resume(
    slurm, tmp_path, mnist_data_dir):
  """Submitted from another folder with one override: two processes equal
  one with two devices; scancel --signal=TERM mid-run checkpoints, requeues
  and resumes to the same end, in one log."""
  data = f'--config.data.data_dir={mnist_data_dir}'
  script = str(REPO / 'launch' / 'slurm.sbatch')
  whole, termed = tmp_path / 'whole', tmp_path / 'termed'
  config = f'{REPO}/{CONFIG}'  # paths are the submitting folder's
  first = sbatch('--ntasks-per-node=2', script, config, str(whole), *ARGS,
                 data, cwd=tmp_path)
  assert wait_for(first)['JobState'] == 'COMPLETED', (
      whole / f'slurm-{first}.log').read_text()[-3000:]
  log = (whole / f'slurm-{first}.log').read_text()
  assert log.count('Done: ') == 1  # process 0's lines only
  assert 'Traceback' not in log
  single = tmp_path / 'single'
  run_cli(f'--config={CONFIG}', *ARGS, data, f'--workdir={single}', devices=2)
  one, two = (json.loads((d / 'results.json').read_text())
              for d in (single, whole))
  assert one['devices'] == two['devices'] == 2
  losses = lambda d: [r['train/loss'] for r in read_jsonl(d / 'metrics.jsonl')
                      if 'train/loss' in r]
  # Gloo's all-reduce against XLA's: the same sums, rounded alike or nearly.
  np.testing.assert_allclose(losses(whole), losses(single), rtol=1e-5)

  second = sbatch('--ntasks-per-node=2', script, config, str(termed), *ARGS,
                  data, cwd=tmp_path)
  deadline = time.monotonic() + 300
  while not any(p.name.isdigit() for p in (termed / 'checkpoints').glob('*')):
    assert time.monotonic() < deadline and job(second)['JobState'] in (
        'PENDING', 'RUNNING'), job(second)
    time.sleep(0.2)
  subprocess.run(['scancel', '--signal=TERM', second], check=True)
  info = wait_for(second)
  log = (termed / f'slurm-{second}.log').read_text()
  assert info['JobState'] == 'COMPLETED', log[-3000:]
  assert info['Restarts'] == '1', info
  stopped = re.search(r'Stopped by SIGTERM at step (\d+)', log)
  assert stopped and f'Resumed from the checkpoint at step {stopped[1]}' in log
  assert log.count('== job ') == 2  # both attempts, appended
  assert_same_run(whole, termed)


def test_a_sweep_runs_as_a_job_array_and_reports(slurm, tmp_path,
                                                 mnist_data_dir):
  command = [sys.executable, '-m', 'launch.sweep', f'--config={CONFIG}',
             "--sweep=optimizer.learning_rate=1.0,3.0;seed=0,1",
             f'--workdir={tmp_path}', '--launcher=slurm',
             f'--config.data.data_dir={mnist_data_dir}']
  proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  array, report = (tmp_path / 'slurm' / 'job_ids').read_text().split()
  assert wait_for(report)['JobState'] == 'COMPLETED'
  rows = (tmp_path / 'results.csv').read_text().splitlines()
  assert len(rows) == 5 and all(',done,' in r for r in rows[1:]), rows
  # Rerun: every point has results, so nothing is submitted again.
  again = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
  assert again.returncode == 0, again.stderr[-3000:]
  assert '4 finished earlier (skipped), 0 to run' in again.stdout
  assert (tmp_path / 'slurm' / 'job_ids').read_text().split() == [array,
                                                                 report]
