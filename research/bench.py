r"""Training-step throughput of any registered model.

  python -m research.bench --model=alexnet --batch=32 [--steps=10]
      [--dtype=bfloat16] [--mesh_model=2]

Times full training steps (forward, backward, SGD-momentum update) through the
training loop's own state and compiled chunk function, on random images of the
model's input size and 1000 classes (street_numbers: its length and digit
heads at 54x54), after compiling ahead of time. `--dtype`
is the models' compute dtype (params stay float32); `--mesh_model=2` runs
AlexNet's towers one per device (section 3.2) on a (devices / 2, 2) mesh.
FLOPs per step come from XLA's cost analysis of the step's HLO; the peak they
are compared with is a large matmul in the same dtype and JAX's default
precision (TF32 for float32 on NVIDIA GPUs), timed in the same run.
Prints a table, then one JSON line: images_per_s, step_s, compile_s, mfu,
params, dtype, and more.
"""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags

from research import losses
from research import mesh as mesh_lib
from research import models
from research import steps

_MODEL = flags.DEFINE_string('model', 'alexnet', 'A key of models.REGISTRY.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps after one warm-up.')
_SIZE = flags.DEFINE_integer('image_size', 0, '0: the model\'s own size.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                           'Compute dtype of the model and the peak matmul.')
_MESH_MODEL = flags.DEFINE_integer(
    'mesh_model', 1, 'Size of the mesh\'s model axis (AlexNet: 2 puts each '
    'tower on its own device).')
_PEAK_SIZE = flags.DEFINE_integer('peak_size', 2048,
                                  'Side of the square matmul timed as peak.')


def matmul_peak(dtype, n: int = 2048, repeats: int = 10) -> float:
  """FLOP/s of an n x n matmul in `dtype` on the default device."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return 2 * n**3 * repeats / (time.perf_counter() - start)


def build(name: str, dtype: str):
  cls = models.REGISTRY[name]
  if name == 'street_numbers':  # its own heads: length and 5 digits
    return cls(dtype=dtype)
  if 'dtype' in {f.name for f in dataclasses.fields(cls)}:
    return cls(num_classes=1000, dtype=dtype)
  if dtype != 'float32':
    raise app.UsageError(f'Model {name!r} has no dtype field; use '
                         '--dtype=float32.')
  return cls(num_classes=1000)


def main(_):
  model = build(_MODEL.value, _DTYPE.value)
  dtype = jnp.dtype(_DTYPE.value)
  size = _SIZE.value or getattr(model, 'input_size', 224)
  # The context mesh, as in training: AlexNet's towers look for 'model' there.
  mesh = mesh_lib.make_mesh(_MESH_MODEL.value)
  with mesh_lib.context(mesh):
    run(model, dtype, size, mesh)


def run(model, dtype, size, mesh):
  """Times training steps on random images and prints the figures."""
  mesh_lib.check_divisible('batch', _BATCH.value, mesh)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1, _BATCH.value, size, size, 3), dtype=np.uint8)
  sequence = hasattr(model, 'max_digits') and not model.per_digit
  if sequence:  # rows [length, 5 digits (-1 absent)], as the data has them
    length = rng.integers(1, model.max_digits + 1, (1, _BATCH.value, 1))
    digits = rng.integers(0, 10, (1, _BATCH.value, model.max_digits))
    digits[np.arange(model.max_digits) >= length] = -1
    labels = np.concatenate([length, digits], -1).astype(np.int32)
  else:
    labels = rng.integers(0, 1000, (1, _BATCH.value), dtype=np.int32)
  batches = mesh_lib.to_global({'image': images, 'label': labels},
                               mesh_lib.stacked_batches(mesh))
  tx = optax.sgd(0.01, momentum=0.9)
  state = steps.create_train_state(model, tx, jax.random.key(0), images[0, :1],
                                   mesh)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  key = jax.random.key(1)
  # One step per call, as configs of convolutional nets run (steps_per_call=1).
  loss = 'sequence_log_likelihood' if sequence else 'softmax_cross_entropy'
  chunk = steps.make_train_chunk(model, losses.get(loss),
                                 aux_loss_weight=0.3)
  start = time.perf_counter()
  lowered = chunk.lower(state, batches, key)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  # Counted before compiling, for the whole global batch: compiled GPU
  # convolutions are cuDNN custom calls that XLA counts as zero FLOPs. Where
  # the backend has no count before compiling (GPUs), FLOPs and MFU are null.
  cost = lowered.cost_analysis()
  flops_per_step = cost['flops'] if cost else None
  state, step_losses = compiled(state, batches, key)  # warm-up
  jax.block_until_ready(step_losses)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, step_losses = compiled(state, batches, key)
  jax.block_until_ready(step_losses)
  step_s = (time.perf_counter() - start) / _STEPS.value
  # One device's matmul rate, times the devices that share the step.
  peak = matmul_peak(dtype, _PEAK_SIZE.value) * jax.device_count()
  achieved = None if flops_per_step is None else flops_per_step / step_s
  out = {'model': _MODEL.value, 'batch': _BATCH.value, 'image_size': size,
         'dtype': dtype.name, 'device': jax.devices()[0].device_kind,
         'devices': jax.device_count(), 'mesh': dict(mesh.shape),
         'params': int(params),
         'compile_s': compile_s, 'step_s': step_s,
         'images_per_s': _BATCH.value / step_s,
         'flops_per_step': flops_per_step, 'achieved_flops_per_s': achieved,
         'peak_matmul_flops_per_s': peak,
         'mfu': None if achieved is None else achieved / peak}
  print(f"{out['model']} batch {out['batch']} {size}x{size} {out['dtype']} on "
        f"{out['device']} x{out['devices']} (mesh data {mesh.shape['data']}, "
        f"model {mesh.shape['model']}): {out['images_per_s']:.1f} images/s, "
        f"step {step_s * 1e3:.1f} ms, compile {compile_s:.1f} s")
  if achieved is not None:
    print(f'{flops_per_step / 1e9:.1f} GFLOP/step, achieved '
          f'{achieved / 1e9:.1f} GFLOP/s, {out["dtype"]} matmul peak '
          f'{peak / 1e9:.1f} GFLOP/s, MFU {out["mfu"]:.1%}')
  else:
    print(f'{out["dtype"]} matmul peak {peak / 1e9:.1f} GFLOP/s; no FLOP '
          f'count before compiling on {jax.default_backend()}, so no MFU')
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
