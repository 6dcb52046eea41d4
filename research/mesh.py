"""The device mesh (data, model): the batch is split on 'data'; params are
replicated, except those a model annotates as split over 'model' (AlexNet's
towers, one per device as on the paper's two GPUs, section 3.2).

One jit-compiled step over this mesh is today's form of pmap: the same code runs
on 1 CPU, 8 GPUs or a TPU pod; XLA inserts the gradient all-reduce.
"""
import contextlib
import os

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from research import errors

DATA, MODEL = 'data', 'model'  # the mesh's axes


class ShardingError(errors.UserError, ValueError):
  """A batch size the device count does not divide."""


def _cluster_detected() -> bool:
  """True on a multi-process Slurm job or a multi-worker Cloud TPU slice, where
  jax.distributed.initialize() finds the coordinator by itself."""
  env = os.environ
  slurm = int(env.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_JOB_ID' in env
  tpu_workers = env.get('TPU_WORKER_HOSTNAMES', '')
  return slurm or ',' in tpu_workers


def initialize_distributed(coordinator_address=None, num_processes=None,
                           process_id=None):
  """Starts JAX's multi-controller runtime when the run spans processes.

  Must run before anything asks JAX about devices. Explicit arguments win (a
  local multi-process run); otherwise Slurm and Cloud TPU are auto-detected;
  otherwise this is a single-process run and nothing happens.
  """
  if coordinator_address or num_processes:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  elif _cluster_detected():
    jax.distributed.initialize()


def make_mesh(model: int = 1) -> jax.sharding.Mesh:
  """All devices as (devices // model, model) on the axes ('data', 'model').

  Auto axes: XLA propagates shardings from the inputs' (JAX 0.10's make_mesh
  defaults to Explicit ones, which would make every op's sharding a type).
  """
  devices = jax.device_count()
  if not isinstance(model, int) or model < 1 or devices % model:
    divisors = [str(d) for d in range(1, devices + 1) if devices % d == 0]
    raise ShardingError(
        f'config.mesh.model={model!r} does not divide the {devices} devices '
        f'into a (data, model) mesh. Use --config.mesh.model='
        f'{" or ".join(divisors)}.')
  return jax.make_mesh((devices // model, model), (DATA, MODEL),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


@contextlib.contextmanager
def context(mesh: jax.sharding.Mesh):
  """Within it, a mesh with a 'model' axis is JAX's context mesh
  (`jax.set_mesh`).

  Layers that place work per device (AlexNet's towers) read it with
  `jax.sharding.get_abstract_mesh()` while a step is traced; without it they
  run as on one device, which is all a model axis of 1 needs, so then JAX's
  state is left as it was (a context mesh also changes what flax's `nn.unbox`
  and jit accept).
  """
  if mesh.shape[MODEL] > 1:
    with jax.set_mesh(mesh):
      yield mesh
  else:
    yield mesh


def check_divisible(name: str, batch_size: int, mesh: jax.sharding.Mesh):
  """The batch splits over the 'data' axis (replicated across 'model')."""
  n = mesh.shape[DATA]
  if batch_size % n:
    lower, upper = batch_size // n * n, -(-batch_size // n) * n
    options = ' or '.join(str(b) for b in (lower, upper) if b > 0)
    where = (f'{n} devices' if n == mesh.devices.size else
             f'{n} data-parallel groups ({mesh.devices.size} devices / '
             f'config.mesh.model={mesh.shape[MODEL]})')
    raise ShardingError(
        f'config.{name}={batch_size} does not divide over {where}; each '
        f'group must get the same number of examples. Use --config.{name}='
        f'{options}, or a mesh whose data axis divides {batch_size}.')


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def stacked_batches(mesh, leading: int = 1) -> NamedSharding:
  """(steps, batch, ...) arrays, or with `leading` = 2 (seeds, steps, batch,
  ...): the batch axis split over 'data'."""
  return NamedSharding(mesh, P(*([None] * leading), DATA))


def param_shardings(boxed_params, mesh) -> dict:
  """Shardings of the params a model's init returns, from their flax
  partitioning metadata (`nn.with_partitioning`); unannotated params are
  replicated. The tree has the unboxed params' structure."""
  def check(path, box):
    if not isinstance(box, nn.Partitioned):
      return
    for size, axis in zip(box.value.shape, box.names):
      if axis is not None and size % mesh.shape[axis]:
        raise ShardingError(
            f'{jax.tree_util.keystr(path)} has {size} entries along mesh axis '
            f'{axis!r} of {mesh.shape[axis]} devices, which do not divide them. '
            f'Use --config.mesh.model={size} or 1.')
  jax.tree_util.tree_map_with_path(
      check, boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  return nn.get_sharding(boxed_params, mesh)


def like_params(tree, params_like, shardings, mesh):
  """Shardings for a tree that holds copies of the params (an optimizer
  state: momentum, Adam's moments) besides other leaves (step counts).

  A leaf whose key path ends in a param's path, with that param's shape, gets
  the param's sharding; the rest are replicated. Matching paths, not
  `optax.tree_map_params`, because that calls mask functions (weight decay on
  kernels only) with a placeholder instead of the params.
  """
  flat = lambda t: {tuple(path): x for path, x in
                    jax.tree_util.tree_flatten_with_path(t)[0]}
  params, param_sharding = flat(params_like), flat(shardings)

  def choose(path, leaf):
    for start in range(len(path)):
      param = params.get(tuple(path[start:]))
      if param is not None and param.shape == leaf.shape:
        return param_sharding[tuple(path[start:])]
    return replicated(mesh)
  return jax.tree_util.tree_map_with_path(choose, tree)


def to_global(host_arrays: dict, sharding: NamedSharding) -> dict:
  """This host's rows of each batch -> global arrays over the mesh."""
  if jax.process_count() == 1:  # same result, 4x faster than the general path
    return jax.device_put(host_arrays, sharding)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in host_arrays.items()}
