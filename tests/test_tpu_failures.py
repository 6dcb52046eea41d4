"""launch.tpu against a stand-in gcloud (tests/fake_gcloud.py) that plays
what Cloud TPU does: quota refused, a spot VM preempted mid-run, success."""
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

RUN = ['--name=nielsen', '--zone=us-central2-b', '--accelerator_type=v4-8',
       '--spot', '--workdir=gs://bucket/runs/n',
       '--config=configs/mnist_nielsen.py:test', '--config.num_epochs=40']


def launch(tmp_path, scenario, data_dir, *flags):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  gcloud = bin_dir / 'gcloud'
  gcloud.write_text(f'#!/bin/sh\nexec {sys.executable} '
                    f'{REPO / "tests" / "fake_gcloud.py"} "$@"\n')
  gcloud.chmod(0o755)
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}',
             FAKE_GCLOUD_DIR=str(tmp_path), FAKE_GCLOUD_SCENARIO=scenario,
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.tpu', *RUN,
       f'--config.data.data_dir={data_dir}',
       f'--results_to={tmp_path / "results.json"}', *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  calls = (tmp_path / 'calls').read_text().splitlines()
  verbs = [c.split()[3] if c.startswith('compute tpus tpu-vm') else
           c.split()[0] for c in calls]
  return proc, verbs


def test_quota_is_one_paragraph_and_creates_nothing(tmp_path, mnist_data_dir):
  proc, verbs = launch(tmp_path, 'quota', mnist_data_dir, '--retries=2')
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  error = proc.stderr.strip().splitlines()[-1]
  assert error.startswith("Error: The 'create' step failed")
  assert 'Quota exceeded' in error and 'another --zone' in error, error
  assert verbs == ['compute', 'create'], verbs  # no retry, nothing to delete


@pytest.mark.slow  # two runs of the main job's test config
def test_a_preempted_spot_vm_is_recreated_and_the_run_resumes(
    tmp_path, mnist_data_dir):
  proc, verbs = launch(tmp_path, 'preempt', mnist_data_dir, '--retries=1')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert verbs == ['compute', 'create', 'scp', 'ssh', 'ssh', 'describe',
                   'delete', 'create', 'scp', 'ssh', 'ssh', 'storage',
                   'delete'], verbs
  assert 'the VM was preempted during \'run\'' in proc.stdout
  assert 'Stopped by SIGTERM at step' in proc.stderr
  assert 'Resumed from the checkpoint at step' in proc.stderr
  assert (tmp_path / 'results.json').exists()
  assert not (tmp_path / 'vm').exists()  # deleted at the end


def test_preempted_without_retries_says_how_to_resume(tmp_path,
                                                      mnist_data_dir):
  proc, verbs = launch(tmp_path, 'preempt_always', mnist_data_dir)
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  error = proc.stderr.strip().splitlines()[-1]
  assert error.startswith("Error: The 'run' step failed"), error
  assert 'closed by remote host' in error and 'rerun the same command' in error
  assert verbs[-1] == 'delete' and verbs.count('create') == 1, verbs
  assert not (tmp_path / 'vm').exists()
