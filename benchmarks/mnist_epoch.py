r"""Seconds per epoch of Nielsen's MNIST network: this codebase vs numpy.

  python -m benchmarks.mnist_epoch --manual_dir=../shared/data/mnist

Times whole epochs of configs/mnist_nielsen.py (50,000 images, mini-batch 10,
5,000 SGD steps) through the training loop's own compiled chunk function, host
batching included, after compiling ahead of time (reported apart). The baseline
is Nielsen's per-example numpy algorithm (benchmarks/numpy_network.py) timed in
the same run, in a fresh process with only numpy loaded, once with numpy's
default BLAS threads and once with one; the speed-up is against the faster.
Prints a table, then one JSON line.
"""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags

from research import losses
from research import mesh as mesh_lib
from research import models
from research import optim
from research import steps
from research.data import pipeline
from configs import mnist_nielsen

_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'Original MNIST files.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
_EPOCHS = flags.DEFINE_integer('epochs', 5, 'Timed JAX epochs.')
_NUMPY_EPOCHS = flags.DEFINE_integer('numpy_epochs', 1, 'Timed numpy epochs.')


def jax_epochs(config, arrays, num_epochs):
  mesh = mesh_lib.make_mesh()
  sharding = mesh_lib.stacked_batches(mesh)
  data = pipeline.TrainBatches(arrays, config.batch_size, config.seed)
  model = models.build(config.model)
  tx, _ = optim.create(config.optimizer, data.steps_per_epoch,
                       data.steps_per_epoch * num_epochs)
  state = steps.create_train_state(model, tx, jax.random.key(0),
                                   arrays['image'][:1], mesh)
  chunk = config.steps_per_call
  key = jax.random.key(1)
  first = mesh_lib.to_global(data.chunk(0, chunk), sharding)
  start = time.perf_counter()
  step_fn = steps.make_train_chunk(model, losses.get(config.loss)).lower(
      state, first, key).compile()
  compile_s = time.perf_counter() - start
  epoch_s = []
  step = 0
  load = lambda first: mesh_lib.to_global(data.chunk(first, chunk), sharding)
  # As in train.py, each chunk is staged while the device runs the one
  # before, across epoch ends too: the first epoch also waits for its first
  # chunk, the others find it staged by the epoch before.
  start = time.perf_counter()
  batches = load(step)
  for _ in range(num_epochs):
    for _ in range(data.steps_per_epoch // chunk):
      state, step_losses = step_fn(state, batches, key)
      step += chunk
      batches = load(step)
    jax.block_until_ready(step_losses)
    epoch_s.append(time.perf_counter() - start)
    start = time.perf_counter()
  return compile_s, epoch_s


# BLAS thread settings the baseline is timed under; the faster one counts.
BLAS_THREADS = {'default': None, '1 thread': '1'}
BLAS_VARIABLES = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')


def numpy_epochs(arrays, num_epochs, config) -> dict:
  """{BLAS setting: seconds per epoch} of the numpy baseline, each run in a
  fresh process with only numpy loaded (beside this process's JAX and
  TensorFlow it ran 40% slower, which would flatter the speed-up)."""
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, 'train.npz')
    np.savez(data, image=arrays['image'], label=arrays['label'])
    times = {}
    for name, threads in BLAS_THREADS.items():
      env = {k: v for k, v in os.environ.items() if k not in BLAS_VARIABLES}
      env.update({k: threads for k in BLAS_VARIABLES if threads})
      out = subprocess.run(
          [sys.executable, '-m', 'benchmarks.numpy_network', f'--data={data}',
           f'--epochs={num_epochs}', f'--batch_size={config.batch_size}',
           f'--eta={config.optimizer.learning_rate}',
           '--hidden', *map(str, config.model.hidden)],
          env=env, check=True, capture_output=True, text=True).stdout
      times[name] = json.loads(out.splitlines()[-1])['epoch_s']
  return times


def main(_):
  config = mnist_nielsen.get_config()
  config.data.manual_dir = _MANUAL_DIR.value
  config.data.data_dir = _DATA_DIR.value
  assert config.steps_per_call and 5000 % config.steps_per_call == 0
  arrays = pipeline.load(config.data)['train']
  compile_s, jax_s = jax_epochs(config, arrays, _EPOCHS.value)
  numpy_s = numpy_epochs(arrays, _NUMPY_EPOCHS.value, config)
  numpy_by_blas = {k: statistics.median(v) for k, v in numpy_s.items()}
  jax_median, numpy_median = statistics.median(jax_s), min(numpy_by_blas.values())
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}')
  print(f'compile (once):           {compile_s:8.3f} s')
  print(f'JAX epoch (median of {len(jax_s)}): {jax_median:8.3f} s   '
        f'(all: {", ".join(f"{t:.3f}" for t in jax_s)})')
  for name, seconds in numpy_by_blas.items():
    print(f'numpy epoch, BLAS {name + ":":10s}{seconds:6.3f} s   (median of '
          f'{_NUMPY_EPOCHS.value}, own process)')
  print(f'speed-up over the faster: {numpy_median / jax_median:8.1f}x '
        f'(target >= 20x)')
  print(json.dumps({'jax_epoch_s': jax_median, 'jax_epoch_s_all': jax_s,
                    'compile_s': compile_s, 'numpy_epoch_s': numpy_median,
                    'numpy_epoch_s_by_blas': numpy_by_blas,
                    'speedup': numpy_median / jax_median,
                    'examples_per_epoch': len(arrays['label'])}))


if __name__ == '__main__':
  app.run(main)
