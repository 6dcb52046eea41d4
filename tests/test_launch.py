"""Launch scripts: the Cloud TPU command sequence and the Slurm script."""
import shlex
import subprocess
import sys

from tests.conftest import REPO


def test_tpu_dry_run_prints_the_whole_pod_sequence():
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.tpu', '--name=nielsen-pod',
       '--zone=us-central2-b', '--accelerator_type=v4-32', '--spot',
       '--config=configs/mnist_nielsen.py', '--workdir=gs://bucket/runs/n',
       '--config.seed=3', '--dry_run'],
      cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
  lines = proc.stdout.splitlines()
  steps = [line[2:] for line in lines if line.startswith('# ')]
  assert steps == ['pack', 'create', 'copy', 'install', 'run', 'fetch', 'delete']
  cmd = {name: shlex.split(lines[lines.index(f'# {name}') + 1]) for name in steps}
  assert cmd['create'][:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']
  assert {'--accelerator-type=v4-32', '--spot', '--zone=us-central2-b'} <= set(cmd['create'])
  for name in ('copy', 'install', 'run'):
    assert '--worker=all' in cmd[name], name
  assert 'pip install' in cmd['install'][-1] and 'requirements.txt' in cmd['install'][-1]
  run = cmd['run'][-1]
  assert ('research.main --config=configs/mnist_nielsen.py --config.seed=3 '
          '--workdir=gs://bucket/runs/n') in run
  assert cmd['fetch'][-2:] == ['gs://bucket/runs/n/results.json',
                               'nielsen-pod_results.json']
  assert cmd['delete'][4:6] == ['delete', 'nielsen-pod']


def test_tpu_launch_refuses_a_local_workdir():
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.tpu', '--name=x', '--zone=z',
       '--config=configs/neuron.py', '--workdir=/tmp/x', '--dry_run'],
      cwd=REPO, capture_output=True, text=True, timeout=60)
  assert proc.returncode != 0 and 'gs://' in proc.stderr


def test_slurm_script_is_valid_bash_relying_on_autodetection():
  script = REPO / 'launch' / 'slurm.sbatch'
  subprocess.run(['bash', '-n', str(script)], check=True)
  text = script.read_text()
  assert 'srun' in text and '--coordinator_address' not in text


def test_cluster_autodetection(monkeypatch):
  from research import mesh
  for name in ('SLURM_JOB_ID', 'SLURM_NTASKS', 'TPU_WORKER_HOSTNAMES'):
    monkeypatch.delenv(name, raising=False)
  assert not mesh._cluster_detected()  # a single process: nothing to start
  monkeypatch.setenv('SLURM_JOB_ID', '7')
  monkeypatch.setenv('SLURM_NTASKS', '1')
  assert not mesh._cluster_detected()
  monkeypatch.setenv('SLURM_NTASKS', '4')
  assert mesh._cluster_detected()
  monkeypatch.delenv('SLURM_JOB_ID')
  monkeypatch.setenv('TPU_WORKER_HOSTNAMES', '10.0.0.2,10.0.0.3')
  assert mesh._cluster_detected()
