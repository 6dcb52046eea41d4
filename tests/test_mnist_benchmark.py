"""The MNIST speed benchmark: its numpy baseline is a working network.py, timed
in a process of its own, and the speed-up it prints is computed from the
figures it prints."""
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks import numpy_network
from research.data.multidigit import read_idx
from tests.conftest import MNIST_FILES
from tests.conftest import REPO


def _mnist(first: int, count: int):
  images = read_idx(str(MNIST_FILES / 'train-images-idx3-ubyte.gz'))
  labels = read_idx(str(MNIST_FILES / 'train-labels-idx1-ubyte.gz'))
  return images[first:first + count], labels[first:first + count]


def test_numpy_baseline_learns_real_digits():
  """A broken baseline would make any speed-up meaningless."""
  images, labels = _mnist(0, 10_000)
  test_images, test_labels = _mnist(50_000, 1000)
  rng = np.random.default_rng(0)
  net = numpy_network.NumpyNetwork([784, 30, 10], rng)
  train = numpy_network.examples(images, labels)
  flat = test_images.reshape(len(test_images), -1).astype(np.float64) / 255.0
  before = net.accuracy(flat, test_labels)
  for _ in range(2):
    net.train_epoch(train, 10, 3.0, rng)
  assert before < 0.3 and net.accuracy(flat, test_labels) > 0.8


def test_benchmark_times_numpy_in_its_own_process(mnist_data_dir):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.mnist_epoch',
       f'--data_dir={mnist_data_dir}', f'--manual_dir={MNIST_FILES}',
       '--epochs=2', '--numpy_epochs=1'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  by_blas = out['numpy_epoch_s_by_blas']
  assert set(by_blas) == {'default', '1 thread'}
  assert out['numpy_epoch_s'] == min(by_blas.values()) > 0
  assert len(out['jax_epoch_s_all']) == 2 and out['examples_per_epoch'] == 50_000
  assert out['speedup'] == out['numpy_epoch_s'] / out['jax_epoch_s']
