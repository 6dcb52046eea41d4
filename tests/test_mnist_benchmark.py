"""The MNIST speed benchmark: its numpy baseline is a working network.py, the
JAX training step computes the same update, the baseline is timed in a process
of its own, and the speed-up it prints is computed from the figures it
prints."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import numpy_network
from research import losses
from research import mesh as mesh_lib
from research import models
from research import optim
from research import steps as steps_lib
from research.data.idx import read_idx
from tests.helpers import MNIST_FILES
from tests.helpers import REPO
from tests.helpers import load_config


def _mnist(first: int, count: int):
  images = read_idx(str(MNIST_FILES / 'train-images-idx3-ubyte.gz'))
  labels = read_idx(str(MNIST_FILES / 'train-labels-idx1-ubyte.gz'))
  return images[first:first + count], labels[first:first + count]


def test_numpy_reference_runs_nielsens_split():
  """The baseline learns (a broken one would make any speed-up meaningless),
  and is the reference run README compares accuracies with: one epoch on the
  first 50,000 training images, scored on the 10,000 test images (Nielsen's
  epoch 0: about 90%)."""
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.numpy_network',
       f'--mnist_dir={MNIST_FILES}', '--epochs=1', '--seed=1'],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  (accuracy,) = json.loads(proc.stdout)['test_accuracy']
  print(f'numpy network.py, one epoch: {accuracy:.2%} test')
  assert 0.85 < accuracy < 0.97


def test_jax_step_is_network_py_update():
  """From the same weights, the compiled chunk of configs/mnist_nielsen.py
  (quadratic cost, SGD at eta 3.0, mini-batch 10) takes network.py's steps on
  real digits: float32 against float64."""
  config = load_config('mnist_nielsen')
  steps, batch = 5, config.batch_size
  images, labels = _mnist(0, steps * batch)
  model = models.build(config.model)
  tx, _ = optim.create(config.optimizer, steps, steps)
  state = steps_lib.create_train_state(model, tx, jax.random.key(0), images[:batch],
                                   mesh_lib.make_mesh())
  layers = ('dense0', 'output')
  net = numpy_network.NumpyNetwork([784, 30, 10], np.random.default_rng(0))
  net.weights = [np.asarray(state.params[k]['kernel'], np.float64) for k in layers]
  net.biases = [np.asarray(state.params[k]['bias'], np.float64)[:, None]
                for k in layers]
  before = [w.copy() for w in net.weights]
  state, _ = steps_lib.make_train_chunk(model, losses.get(config.loss))(
      state, {'image': images.reshape(steps, batch, 28, 28, 1),
              'label': labels.reshape(steps, batch)}, jax.random.key(1))
  examples = numpy_network.examples(images, labels)
  for i in range(steps):
    net.update_mini_batch(examples[i * batch:(i + 1) * batch],
                          config.optimizer.learning_rate)
  assert all(np.abs(w - w0).max() > 0.05 for w, w0 in zip(net.weights, before))
  for k, w, b in zip(layers, net.weights, net.biases):
    np.testing.assert_allclose(state.params[k]['kernel'], w, rtol=0, atol=1e-4)
    np.testing.assert_allclose(state.params[k]['bias'], b[:, 0], rtol=0, atol=1e-4)


@pytest.mark.slow  # 50 s
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
