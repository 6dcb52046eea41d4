"""Objectives to maximise: pure functions of a network's named activations.

An `Objective` maps the dict `Network.activations` returns ({name: (B, ...)},
the images under 'input') to one scalar for the whole batch. They compose:
`channel('conv2/pre_relu', 3) - 0.05 * total_variation() + 100 * diversity(
'conv2/relu')`. Indices may be traced arrays, so one compiled call can render
many targets under `jax.vmap`.

Following Olah, Mordvintsev, Schubert, "Feature Visualization", Distill 2017
and tensorflow/lucid's objectives; `layer` is DeepDream's (Mordvintsev, Olah,
Tyka, "Inceptionism", 2015): the mean of the squared activations.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

Activations = dict  # name -> array with a leading batch axis


@dataclasses.dataclass(frozen=True)
class Objective:
  fn: Callable[[Activations], jax.Array]
  name: str

  def __call__(self, acts: Activations) -> jax.Array:
    return self.fn(acts)

  def __add__(self, other):
    other = _lift(other)
    return Objective(lambda a: self(a) + other(a), f'{self.name} + {other.name}')

  __radd__ = __add__

  def __sub__(self, other):
    return self + (-1.0) * _lift(other)

  def __rsub__(self, other):
    return _lift(other) + (-1.0) * self

  def __neg__(self):
    return (-1.0) * self

  def __mul__(self, scale):
    if isinstance(scale, Objective):
      raise TypeError('Objectives multiply by numbers, not by objectives.')
    return Objective(lambda a: scale * self(a), f'{_number(scale)} * {self.name}')

  __rmul__ = __mul__

  def __truediv__(self, scale):
    return self * (1.0 / scale)


def _number(x) -> str:
  return f'{x:g}' if isinstance(x, (int, float)) else 'c'


def _lift(x) -> Objective:
  if isinstance(x, Objective):
    return x
  return Objective(lambda a: jnp.asarray(x, jnp.float32), _number(x))


def _get(acts: Activations, layer: str) -> jax.Array:
  if layer not in acts:
    raise KeyError(f'No activation {layer!r}; the network has: '
                   f'{", ".join(sorted(acts))}.')
  return acts[layer].astype(jnp.float32)


def neuron(layer: str, index, y=None, x=None) -> Objective:
  """One unit: channel `index` at position (y, x) of a (B, H, W, C) layer
  (default the centre), or unit `index` of a (B, F) layer."""
  def fn(acts):
    a = _get(acts, layer)
    if a.ndim == 4:
      yy = a.shape[1] // 2 if y is None else y
      xx = a.shape[2] // 2 if x is None else x
      a = a[:, yy, xx]
    return jnp.mean(a[:, index])
  return Objective(fn, f'neuron({layer}, {index})')


def channel(layer: str, index) -> Objective:
  """A feature map's mean over the batch and all positions."""
  return Objective(lambda acts: jnp.mean(_get(acts, layer)[..., index]),
                   f'channel({layer}, {index})')


def layer(name: str) -> Objective:
  """DeepDream's "whatever you see there, I want more of it": the mean of the
  layer's squared activations."""
  return Objective(lambda acts: jnp.mean(jnp.square(_get(acts, name))),
                   f'layer({name})')


def class_logit(index, layer: str = 'logits') -> Objective:
  """A class's pre-softmax logit (maximising the softmax probability instead
  is easily reached by pushing the other classes down: "fooling" noise)."""
  return Objective(lambda acts: jnp.mean(_get(acts, layer)[:, index]),
                   f'class_logit({index})')


def total_variation(layer: str = 'input') -> Objective:
  """Mean absolute difference between vertically and horizontally adjacent
  pixels; subtract it to favour smooth images."""
  def fn(acts):
    a = _get(acts, layer)
    return (jnp.mean(jnp.abs(jnp.diff(a, axis=1)))
            + jnp.mean(jnp.abs(jnp.diff(a, axis=2))))
  return Objective(fn, f'total_variation({layer})')


def l1(layer: str = 'input', constant: float = 0.0) -> Objective:
  """Mean |a - constant|."""
  return Objective(lambda acts: jnp.mean(jnp.abs(_get(acts, layer) - constant)),
                   f'l1({layer})')


def l2(layer: str = 'input', constant: float = 0.0) -> Objective:
  """Root mean square of a - constant."""
  return Objective(
      lambda acts: jnp.sqrt(jnp.mean(jnp.square(_get(acts, layer) - constant))
                            + 1e-12), f'l2({layer})')


def diversity(layer: str) -> Objective:
  """Minus the summed cosine similarity between the Gram (style) matrices of
  different images of the batch, divided by the batch size (lucid's
  `diversity`; the Feature Visualization article weights it by 100)."""
  def fn(acts):
    a = _get(acts, layer)
    b = a.shape[0]
    flat = a.reshape((b, -1, a.shape[-1]))
    grams = jnp.einsum('bpi,bpj->bij', flat, flat) / flat.shape[1]
    grams = grams.reshape((b, -1))
    grams /= jnp.linalg.norm(grams, axis=1, keepdims=True) + 1e-12
    similarity = grams @ grams.T
    return -(jnp.sum(similarity) - jnp.trace(similarity)) / b
  return Objective(fn, f'diversity({layer})')
