"""launch/sweep.py: expanding a sweep, running it, surviving SIGKILL, and the
table and plot it leaves."""
import csv
import re
import os
import signal
import subprocess
import sys
import time

import pytest

from launch import sweep
from research import configlib
from tests.helpers import REPO

CONFIG = 'configs/street_numbers.py:test'


def test_declared_and_written_out_sweeps_expand_to_every_combination():
  module, arg = configlib.config_module(REPO / CONFIG)
  name, grid = sweep.parse_grid('depth', module, arg)
  assert name == 'depth' and grid == {'model.hidden_layers': [3, 4],
                                      'seed': [0]}
  name, grid = sweep.parse_grid(
      'optimizer.learning_rate=0.5,3;seed=0,1', module, arg)
  assert name == 'learning_rate'
  points = sweep.expand(grid)
  assert points == [{'optimizer.learning_rate': 0.5, 'seed': 0},
                    {'optimizer.learning_rate': 0.5, 'seed': 1},
                    {'optimizer.learning_rate': 3, 'seed': 0},
                    {'optimizer.learning_rate': 3, 'seed': 1}]
  assert sweep.point_name(points[1]) == 'learning_rate=0.5,seed=1'
  assert sweep.point_name({'model.width': 1, 'data.width': 2}) == (
      'model.width=1,data.width=2')  # short names would collide
  assert sweep.point_args(points[0]) == [
      '--config.optimizer.learning_rate=0.5', '--config.seed=0']
  with pytest.raises(sweep.SweepError, match='declares no sweep .deep.'):
    sweep.parse_grid('deep', module, arg)


def test_parallel_points_split_the_cpu_cores(monkeypatch):
  monkeypatch.setattr(sweep.shutil, 'which', lambda _: None)  # no GPUs
  monkeypatch.setattr(sweep.os, 'sched_getaffinity', lambda _: {0, 1, 2, 3})
  slots = sweep.device_slots(2)
  assert [s['cpus'] for s in slots] == [{0, 1}, {2, 3}]
  with pytest.raises(sweep.SweepError, match='exceeds the 4 cores'):
    sweep.device_slots(5)


def _sweep(workdir, data_dir, **popen):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen(
      [sys.executable, '-m', 'launch.sweep', f'--config={CONFIG}',
       '--sweep=depth', f'--workdir={workdir}',
       f'--config.data.data_dir={data_dir}', '--config.num_epochs=3'],
      cwd=REPO, env=env, text=True, **popen)


@pytest.mark.slow  # 2 minutes on 2 cores
def test_killed_sweep_resumes_and_reports(tmp_path, multidigit_data_dir):
  """SIGKILL the sweep once the second point has a checkpoint: the rerun
  skips the finished point, resumes the other, and writes the table and
  plot (the smaller form of the depth sweep)."""
  first = tmp_path / 'hidden_layers=3,seed=0'
  second = tmp_path / 'hidden_layers=4,seed=0'
  proc = _sweep(tmp_path, multidigit_data_dir, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
  deadline = time.time() + 400
  while not (second / 'checkpoints').is_dir() or not any(
      p.name.isdigit() for p in (second / 'checkpoints').iterdir()):
    assert proc.poll() is None, 'the sweep ended before it could be killed'
    assert time.time() < deadline
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (first / 'results.json').exists()
  assert not (second / 'results.json').exists()
  finished_at = (first / 'results.json').stat().st_mtime

  out = _sweep(tmp_path, multidigit_data_dir, stdout=subprocess.PIPE,
               stderr=subprocess.STDOUT).communicate(timeout=400)[0]
  assert '1 finished earlier (skipped), 1 to run' in out, out[-3000:]
  assert (first / 'results.json').stat().st_mtime == finished_at
  assert 'Resumed from the checkpoint at step' in (second / 'sweep.log').read_text()
  with open(tmp_path / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['model.hidden_layers'] for r in rows] == ['3', '4']
  assert all(r['status'] == 'done' and r['dataset'] == 'mnist_multidigit/small'
             for r in rows)
  assert all(0 <= float(r['test/sequence_accuracy']) <= 1 for r in rows)
  table = (tmp_path / 'results.md').read_text()
  assert 'Spearman rho' in table and '| hidden_layers=4,seed=0 | done |' in table
  assert (tmp_path / 'depth_vs_accuracy.png').read_bytes()[:4] == b'\x89PNG'


def test_tpu_launcher_runs_each_point_through_launch_tpu(tmp_path):
  def dry_run(*flags):
    return subprocess.run(
        [sys.executable, '-m', 'launch.sweep', f'--config={CONFIG}',
         '--sweep=depth', f'--workdir={tmp_path}', '--launcher=tpu',
         '--dry_run', *flags], cwd=REPO, capture_output=True, text=True,
        timeout=120)
  proc = dry_run('--gcs_workdir=gs://bucket/depth', '--config.num_epochs=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  commands = [line for line in proc.stdout.splitlines()
              if 'launch.tpu' in line]
  assert len(commands) == 2
  first = commands[0].split()
  assert '--workdir=gs://bucket/depth/hidden_layers=3,seed=0' in first
  assert f'--results_to={tmp_path}/hidden_layers=3,seed=0/results.json' in first
  assert '--config.model.hidden_layers=3' in first
  assert '--config.num_epochs=3' in first and '--config.seed=0' in first
  assert '--accelerator_type=v4-8' in first
  proc = dry_run()
  assert proc.returncode != 0 and '--gcs_workdir' in proc.stderr


@pytest.mark.slow  # two sweeps of four short runs
def test_sigterm_to_a_sweep_checkpoints_its_points_and_the_rerun_resumes(
    tmp_path, mnist_data_dir):
  """SIGTERM to a local sweep once both running points have a checkpoint:
  each saves one where it stopped, the sweep exits 143, and rerunning it
  ends every point as an uninterrupted sweep does."""
  from tests.test_resume import assert_same_run
  def run(workdir):
    return subprocess.Popen(
        [sys.executable, '-m', 'launch.sweep',
         '--config=configs/mnist_nielsen.py:test',
         "--sweep=optimizer.learning_rate=1.0,3.0;seed=0,1",
         f'--workdir={workdir}', '--parallel=2', '--config.num_epochs=400',
         '--config.checkpoint_every_epochs=5', '--config.eval_every_epochs=5',
         f'--config.data.data_dir={mnist_data_dir}'],
        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu',
                           TF_CPP_MIN_LOG_LEVEL='2'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
  first = [stopped / f'learning_rate=1.0,seed={s}' for s in (0, 1)]
  proc = run(stopped)
  deadline = time.monotonic() + 300
  while not all(any(p.name.isdigit() for p in (d / 'checkpoints').glob('*'))
                for d in first):
    if proc.poll() is not None:  # e.g. --parallel=2 refused on one core
      pytest.fail(f'The sweep exited {proc.returncode} before both points had '
                  f'a checkpoint:\n{proc.communicate()[0][-3000:]}')
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail('After 300 s a point still had no checkpoint.')
    time.sleep(0.05)
  # The scenario needs both points mid-run: on a machine so loaded that one
  # ran all its epochs before the other started, say so.
  assert not any((d / 'results.json').exists() for d in first), (
      'a point finished before the other had a checkpoint: the machine is too '
      'busy for this test (raise --config.num_epochs here, or free the cores)')
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
  assert 'Stopped by SIGTERM: 2 running point(s) saved a checkpoint' in out
  for d in first:
    log = (d / 'sweep.log').read_text()
    step = re.search(r'Stopped by SIGTERM at step (\d+)', log)
    assert step and (d / 'checkpoints' / step[1]).is_dir(), log[-2000:]
    assert not (d / 'results.json').exists()
  assert not (stopped / 'learning_rate=3.0,seed=0').exists()  # not started
  rerun = run(stopped)
  out = rerun.communicate(timeout=600)[0]
  assert rerun.returncode == 0, out[-3000:]
  uninterrupted = run(whole)
  out = uninterrupted.communicate(timeout=600)[0]
  assert uninterrupted.returncode == 0, out[-3000:]
  for name in ('learning_rate=1.0,seed=0', 'learning_rate=1.0,seed=1',
               'learning_rate=3.0,seed=0', 'learning_rate=3.0,seed=1'):
    assert_same_run(whole / name, stopped / name, name)
  assert 'Resumed from the checkpoint at step' in (
      first[0] / 'sweep.log').read_text()
