"""Grouped convolutions whose groups can live on separate devices: AlexNet's
two towers (Krizhevsky et al. 2012, section 3.2: "the GPUs communicate only in
certain layers").

The towers' kernels are one param with a leading towers axis, annotated with
flax partitioning metadata as split over the mesh axis 'model', so the train
state's shardings derive from the model (`mesh.param_shardings`).

How a layer finds the devices: JAX's context mesh (`jax.set_mesh`, which
`train_and_evaluate` and `bench` set), read while the step is traced. If its
'model' axis has one device per tower, each device convolves only its own
tower inside `jax.shard_map`, as on the paper's two GTX 580s: no device
computes the other tower, tower weights are never gathered, and the halves
meet only where the next layer needs all channels (conv3, fc6). Otherwise
(no mesh, or model axis 1: the CPU case) the towers run one after the other
as plain convolutions on kernel[i]. Not `feature_group_count` and not vmap
over towers (which lowers to it): XLA's CPU grouped convolution is ~6x slower.
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from research.mesh import DATA, MODEL
from research.models import fast_ops


def _per_tower(init: Callable, towers: int) -> Callable:
  """Initialises each tower's slice as its own layer (so a fan-in initializer
  sees one tower's fan-in, not the towers axis) and stacks them."""
  def stacked(key, shape, dtype=jnp.float32):
    keys = jax.random.split(key, towers)
    return jnp.stack([init(k, shape[1:], dtype) for k in keys])
  return stacked


def _conv(x, kernel, stride: int, padding):
  if isinstance(padding, int):
    padding = [(padding, padding)] * 2
  return fast_ops.conv_general_dilated(
      x, kernel, (stride, stride), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _towers_on_devices(conv, x, kernel, bias, mesh):
  """Tower i on the devices at index i of the 'model' axis; the batch stays
  split over 'data' as everywhere else."""
  towers = kernel.shape[0]
  # (B, H, W, towers * c) -> (towers, B, H, W, c): channel halves as in the
  # loop below, tower 0 first.
  x = jnp.moveaxis(x.reshape(*x.shape[:-1], towers, -1), -2, 0)
  # A batch the 'data' axis cannot split (init's single image) is computed
  # whole on each data replica; a data axis of one device is not mapped, or
  # the kernels' gradient would get a (no-op) all-reduce over it.
  data = mesh.shape.get(DATA, 1)
  batch = DATA if data > 1 and x.shape[1] % data == 0 else None
  spec = P(MODEL, batch)

  def local(x, kernel, bias):  # this device's tower: leading axis of size 1
    if batch:
      # Each data shard applies the kernel to its own rows. Said explicitly,
      # so a conv with its own VJP (fast_ops) returns a gradient of the type
      # its kernel had; the cast's transpose sums it over 'data'.
      kernel = jax.lax.pcast(kernel, DATA, to='varying')
    return (conv(x[0], kernel[0]) + bias[0])[None]

  out = jax.shard_map(local, in_specs=(spec, P(MODEL), P(MODEL)),
                      out_specs=spec)(x, kernel, bias)
  return jnp.moveaxis(out, 0, -2).reshape(*out.shape[1:-1], -1)


def _towers_in_turn(conv, x, kernel, bias):
  parts = jnp.split(x, kernel.shape[0], axis=-1)
  return jnp.concatenate([conv(part, kernel[i]) + bias[i]
                          for i, part in enumerate(parts)], axis=-1)


class TowerConv(nn.Module):
  """Convolution with `towers` groups: group i of the input channels makes
  group i of the `features` outputs. Params: kernel (towers, k, k, cin/towers,
  features/towers), bias (towers, features/towers), float32; the arithmetic
  runs in `dtype`."""
  features: int
  kernel: int
  towers: int
  stride: int = 1
  padding: int | str = 'SAME'
  dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    towers = self.towers
    if x.shape[-1] % towers or self.features % towers:
      raise ValueError(f'{towers} towers need input channels ({x.shape[-1]}) '
                       f'and features ({self.features}) divisible by {towers}.')
    split = lambda init, ndim: nn.with_partitioning(
        _per_tower(init, towers), (MODEL,) + (None,) * (ndim - 1))
    kernel = self.param('kernel', split(self.kernel_init, 5),
                        (towers, self.kernel, self.kernel,
                         x.shape[-1] // towers, self.features // towers),
                        jnp.float32)
    bias = self.param('bias', split(self.bias_init, 2),
                      (towers, self.features // towers), jnp.float32)
    x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
    conv = lambda x, k: _conv(x, k, self.stride, self.padding)
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty and mesh.shape.get(MODEL) == towers:
      return _towers_on_devices(conv, x, kernel, bias, mesh)
    return _towers_in_turn(conv, x, kernel, bias)
