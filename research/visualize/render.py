"""Feature visualization by optimisation: images that maximise an objective.

Gradient ascent on an image's parameters with Adam, under a random
transformation each step (Olah, Mordvintsev, Schubert, "Feature
Visualization", Distill 2017; Mordvintsev, Olah, Tyka, "Inceptionism: Going
Deeper into Neural Networks", 2015; Mordvintsev, Pezzotti, Schubert, Olah,
"Differentiable Image Parameterizations", Distill 2018). Lucid's defaults:
Fourier parameterization, `transforms.standard`, Adam(0.05), 512 steps.

The whole optimisation is one `lax.scan`, and it is `vmap`ped over an array of
targets (classes, channels, neurons), so rendering ten classes compiles once.

  images, trace = render(net, lambda t: objectives.class_logit(t),
                         jnp.arange(10), jax.random.key(0))
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from research.visualize import network as network_lib
from research.visualize import objectives
from research.visualize import params as params_lib
from research.visualize import transforms as transforms_lib


@dataclasses.dataclass(frozen=True)
class Renderer:
  """`renderer(targets, key) -> (images, trace)`: images (T, B, H, W, C) in
  [0, 1] and the objective's value at each step (T, steps). `run` is the
  jitted function of (network params, targets, key); calling the renderer
  again with as many targets reuses its compilation."""
  net: network_lib.Network
  run: Any

  def __call__(self, targets, key):
    return self.run(self.net.variables, jnp.asarray(targets), key)


def renderer(net: network_lib.Network,
             objective_for_target: Callable[[jax.Array], objectives.Objective],
             *, steps: int = 512, learning_rate: float = 0.05,
             param: Callable[..., params_lib.Parameterization] = (
                 params_lib.fourier),
             transform: transforms_lib.Transform | None = None,
             batch: int = 1) -> Renderer:
  """A compiled-once renderer of `objective_for_target(target)`.

  `param(batch, h, w, c)` builds the parameterization (`params.fourier`, or
  `params.pixels` for naive pixel ascent); `transform` defaults to
  `transforms.standard` for the network's image size (pass
  `transforms.identity` for none). Every target starts from the same
  parameters and sees the same transformations, so a target's picture does
  not depend on which other targets share the call."""
  h, w, c = net.image_shape
  p = param(batch, h, w, c)
  transform = transforms_lib.standard(h) if transform is None else transform
  tx = optax.adam(learning_rate)

  def one_target(net_params, target, key):
    model = dataclasses.replace(net, variables=net_params)
    objective = objective_for_target(target)

    def value(x, step_key):
      images = transforms_lib.resize(transform(step_key, p.images(x)), (h, w))
      return objective(model.activations(images))

    def step(carry, i):
      x, opt_state = carry
      # Steps draw keys by folding in the step, as training does.
      v, g = jax.value_and_grad(value)(x, jax.random.fold_in(key, i))
      ascent = jax.tree.map(jnp.negative, g)   # optax minimises
      updates, opt_state = tx.update(ascent, opt_state, x)
      return (optax.apply_updates(x, updates), opt_state), v

    init_key, key = jax.random.split(key)
    x = p.init(init_key)
    (x, _), trace = jax.lax.scan(step, (x, tx.init(x)), jnp.arange(steps))
    return p.images(x), trace

  @jax.jit
  def run(net_params, targets, key):
    return jax.vmap(one_target, in_axes=(None, 0, None))(net_params, targets,
                                                          key)

  return Renderer(net, run)


def render(net: network_lib.Network,
           objective_for_target: Callable[[jax.Array], objectives.Objective],
           targets, key, **kwargs) -> tuple[jax.Array, jax.Array]:
  """(images (T, B, H, W, C), trace (T, steps)) for `targets` (a (T,)
  array); `kwargs` as for `renderer`."""
  return renderer(net, objective_for_target, **kwargs)(targets, key)
