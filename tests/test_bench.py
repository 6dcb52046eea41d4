"""The throughput benchmark runs end to end: bfloat16 AlexNet with its towers
on two simulated devices, at the smallest input AlexNet takes."""
import json
import os
import subprocess
import sys

from research import xla_flags
from tests.helpers import REPO


def test_bench_bfloat16_with_towers_on_two_devices():
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             XLA_FLAGS=xla_flags.with_host_devices(
                 os.environ.get('XLA_FLAGS', ''), 2))
  proc = subprocess.run(
      [sys.executable, '-m', 'research.bench', '--model=alexnet', '--batch=2',
       '--steps=1', '--image_size=67', '--dtype=bfloat16', '--mesh_model=2',
       '--peak_size=256'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  lines = proc.stdout.strip().splitlines()
  out = json.loads(lines[-1])
  assert out['dtype'] == 'bfloat16' and 'bfloat16' in lines[0]
  assert out['mesh'] == {'data': 1, 'model': 2}
  assert out['params'] == 24_265_064  # AlexNet with 67x67 inputs
  for key in ('images_per_s', 'step_s', 'compile_s', 'mfu', 'flops_per_step'):
    assert out[key] > 0, key
