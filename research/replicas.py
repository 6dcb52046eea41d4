"""Several seeds of one config trained as one compiled program
(`config.seeds`): the params, optimizer state and data order of each seed
stacked on a leading axis, the step `jax.vmap`ped over it.

Small models (Nielsen's MLP, the street-number nets at 1/8 width) leave an
accelerator mostly idle one at a time; stacked, N seeds take little more than
one. Each seed keeps its own workdir, WORKDIR/seed=S, with what a run of that
seed alone writes there (config.json with that seed, metrics.jsonl, events,
checkpoints, results.json), so a later run of that seed alone resumes it.

Without `config.seeds` this is one run, unstacked and un-vmapped, so its
numbers are those of the loop without this module.
"""
import dataclasses

import jax
import jax.numpy as jnp
from etils import epath

from research import configlib


@dataclasses.dataclass(frozen=True)
class Replicas:
  seeds: tuple          # the seeds trained, one for a plain run
  vmapped: bool         # stacked on a leading axis (config.seeds was set)
  workdirs: tuple       # one per seed

  @classmethod
  def of(cls, config, workdir: epath.Path) -> 'Replicas':
    if not config.seeds:
      return cls((config.seed,), False, (workdir,))
    seeds = tuple(int(s) for s in config.seeds)
    return cls(seeds, True, tuple(workdir / f'seed={s}' for s in seeds))

  def configs(self, config) -> list:
    """Each seed's config, as a run of that seed alone would have it."""
    if not self.vmapped:
      return [config]
    out = []
    for seed in self.seeds:
      alone = config.copy_and_resolve_references()
      alone.seed, alone.seeds = seed, ()
      out.append(alone)
    return out

  def stack(self, trees: list):
    if not self.vmapped:
      return trees[0]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)

  def take(self, tree, i: int):
    return tree if not self.vmapped else jax.tree.map(lambda x: x[i], tree)

  def split(self, tree) -> list:
    return [self.take(tree, i) for i in range(len(self.seeds))]

  def map(self, fn, in_axes=0, donate: bool = False):
    """`fn` over every seed: itself for one run, else jitted vmap."""
    if not self.vmapped:
      return fn
    return jax.jit(jax.vmap(fn, in_axes=in_axes),
                   donate_argnums=(0,) if donate else ())


def validate(config):
  """What training seeds together cannot do: every seed runs the same steps,
  so nothing may stop one seed and not another."""
  if not config.seeds:
    return
  seeds = list(config.seeds)
  if not (all(isinstance(s, int) for s in seeds)
          and len(set(seeds)) == len(seeds)):
    raise configlib.ConfigError(
        f'config.seeds={tuple(seeds)!r} must be distinct integers, e.g. '
        "--config.seeds='(0,1,2,3)'.")
  if config.early_stopping.patience or config.optimizer.plateau.factor != 1:
    raise configlib.ConfigError(
        'config.seeds trains every seed for the same steps: turn off early '
        'stopping (--config.early_stopping.patience=0) and the plateau '
        'schedule (--config.optimizer.plateau.factor=1), or train the seeds '
        'one by one.')
  if config.data.streaming:
    raise configlib.ConfigError(
        'config.seeds needs an in-memory dataset (a streamed one would be '
        'read once per seed): train streamed seeds one by one.')
  if config.num_epochs == 0 or config.init_from:
    raise configlib.ConfigError(
        'config.seeds trains from scratch: config.num_epochs > 0 and no '
        'config.init_from.')
  if config.mesh.model != 1:
    raise configlib.ConfigError(
        'config.seeds stacks whole models on each device: use '
        '--config.mesh.model=1.')
