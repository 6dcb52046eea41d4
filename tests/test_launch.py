"""Launch scripts: the Cloud TPU command sequence and the Slurm script."""
import shlex
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _tpu(*flags, cwd=REPO):
  return subprocess.run([sys.executable, '-m', 'launch.tpu', *flags],
                        cwd=cwd, capture_output=True, text=True, timeout=120)


GOOD = ['--name=nielsen-pod', '--zone=us-central2-b',
        '--accelerator_type=v4-32', '--config=configs/mnist_nielsen.py',
        '--workdir=gs://bucket/runs/n', '--dry_run']


def test_tpu_dry_run_prints_the_whole_pod_sequence():
  proc = _tpu(*GOOD, '--spot', '--config.seed=3')
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  steps = [line[2:] for line in lines if line.startswith('# ')]
  assert steps == ['pack', 'create', 'copy', 'install', 'run', 'fetch',
                   'describe', 'delete']
  cmd = {name: shlex.split(lines[lines.index(f'# {name}') + 1])
         for name in steps[1:]}
  assert cmd['create'][:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']
  assert {'--accelerator-type=v4-32', '--spot', '--zone=us-central2-b'} <= set(cmd['create'])
  for name in ('copy', 'install', 'run'):
    assert '--worker=all' in cmd[name], name
  install = cmd['install'][-1]
  assert 'requirements.txt' in install and '--python 3.11' in install
  run = cmd['run'][-1]
  assert ('research.main --config=configs/mnist_nielsen.py --config.seed=3 '
          '--workdir=gs://bucket/runs/n') in run
  assert cmd['fetch'][-2:] == ['gs://bucket/runs/n/results.json',
                               'nielsen-pod_results.json']
  assert cmd['delete'][4:6] == ['delete', 'nielsen-pod']


@pytest.mark.parametrize('flag,says', [
    ('--acelerator_type=v4-32', 'Did you mean: accelerator_type'),
    ('--sptot', "Unknown command line flag 'sptot'"),
    ('--zone=uscentral2b', 'is not a zone name'),
    ('--accelerator_type=v4', 'is not a TPU type'),
    ('--name=Bad_Name', 'is not a Cloud TPU name'),
    ('--config=configs/nosuch.py', "The config file 'configs/nosuch.py' does "
     'not exist'),
    ('--config.optimizer.learning_rat=1', 'Did you mean "learning_rate"'),
    ('--config.optimizer.learning_rate=-1', 'it must be positive'),
    ('--workdir=/tmp/x', 'gs://'),
])
def test_tpu_launch_checks_everything_before_gcloud(flag, says):
  key = flag.split('=')[0]
  proc = _tpu(*[f for f in GOOD if f.split('=')[0] != key], flag)
  assert proc.returncode != 0
  assert says in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert '# create' not in proc.stdout  # no paid call was reached


def test_tpu_ships_the_working_tree_and_quotes_the_workdir():
  untracked = REPO / 'configs' / 'zz_untracked_for_test.py'
  untracked.write_text((REPO / 'configs' / 'neuron.py').read_text())
  try:
    # In its own process: launch.tpu's flags would clash with launch.sweep's
    # in a worker that imported both.
    shipped = subprocess.run(
        [sys.executable, '-c', 'from launch import tpu; '
         'print(chr(10).join(tpu.shipped_files()))'],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split('\n')
    assert 'configs/zz_untracked_for_test.py' in shipped
    assert not any(f.startswith('.venv/') for f in shipped)  # ignored
    proc = _tpu(*[f for f in GOOD if not f.startswith(('--config', '--workdir'))],
                '--config=configs/zz_untracked_for_test.py',
                '--workdir=gs://bucket/with space')
    assert proc.returncode == 0, proc.stderr[-2000:]
  finally:
    untracked.unlink()
  lines = proc.stdout.splitlines()
  run = shlex.split(lines[lines.index('# run') + 1])[-1]
  assert shlex.split(run)[-1] == '--workdir=gs://bucket/with space'


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
