"""Random transformations applied to the image before every ascent step.

A `Transform` is a pure function `(key, images) -> images` on (B, H, W, C)
batches with output shapes fixed at trace time, so a whole optimisation is one
`lax.scan` under `jit`. An image that keeps exciting the network while it is
jittered, scaled and rotated cannot rely on single-pixel patterns: this is
the "transformation robustness" prior of Olah, Mordvintsev, Schubert,
"Feature Visualization", Distill 2017 (tensorflow/lucid `transform.py`).

Each image of the batch draws its own offsets, scale and angle (Lucid draws
one for the whole batch), so several images of one target see different views.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Transform = Callable[[jax.Array, jax.Array], jax.Array]

LUCID_SIZE = 224   # the input side Lucid's pixel amounts were chosen for
SCALES = tuple(np.round(np.arange(0.90, 1.1001, 0.02), 2))   # 0.90 .. 1.10
ANGLES = tuple(range(-10, 11))                               # degrees


def identity(key, images):
  del key
  return images


def pad(width: int, value: float = 0.5) -> Transform:
  """A constant border, so jitter and rotation bring in a neutral colour
  rather than wrapping the image around."""
  def fn(key, images):
    del key
    w = ((0, 0), (width, width), (width, width), (0, 0))
    return jnp.pad(images, w, constant_values=value)
  return fn


def jitter(d: int) -> Transform:
  """Lucid's jitter, a random crop: each image loses d rows and d columns at
  a random offset 0..d, so H and W shrink by d (statically)."""
  def fn(key, images):
    b, h, w, c = images.shape
    offsets = jax.random.randint(key, (b, 2), 0, d + 1)
    crop = lambda image, o: jax.lax.dynamic_slice(
        image, (o[0], o[1], 0), (h - d, w - d, c))
    return jax.vmap(crop)(images, offsets)
  return fn


def scale_rotate(scales: Sequence[float] = SCALES,
                 angles: Sequence[float] = ANGLES,
                 value: float = 0.5) -> Transform:
  """Zoom by a random one of `scales` and rotate by a random one of `angles`
  (degrees) about the centre, in one bilinear resampling that keeps the shape.

  Lucid scales (changing the shape) and rotates separately; one resampling
  blurs once instead of twice, and the zoom's lost or added border is the
  padding that the following jitter and final resize make irrelevant."""
  scales = jnp.asarray(scales, jnp.float32)
  radians = jnp.deg2rad(jnp.asarray(angles, jnp.float32))

  def fn(key, images):
    b = images.shape[0]
    k_scale, k_angle = jax.random.split(key)
    s = jax.random.choice(k_scale, scales, (b,))
    a = jax.random.choice(k_angle, radians, (b,))
    return jax.vmap(lambda im, s, a: _affine(im, s, a, value))(images, s, a)
  return fn


def _affine(image, scale, angle, value):
  h, w, _ = image.shape
  cy, cx = (h - 1) / 2, (w - 1) / 2
  y, x = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing='ij')
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Each output pixel reads the input where the inverse map sends it.
  src = [(cos * y - sin * x) / scale + cy, (sin * y + cos * x) / scale + cx]
  sample = lambda channel: jax.scipy.ndimage.map_coordinates(
      channel, src, order=1, mode='constant', cval=value)
  return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)


def compose(*transforms: Transform) -> Transform:
  """Applies `transforms` in order, each with its own key."""
  def fn(key, images):
    for i, t in enumerate(transforms):
      images = t(jax.random.fold_in(key, i), images)
    return images
  return fn


def scaled_pixels(size: int, lucid_pixels: int) -> int:
  """Lucid's pixel amount for a 224-pixel input, scaled to `size` (>= 1)."""
  return max(1, round(lucid_pixels * size / LUCID_SIZE))


def standard(size: int, value: float = 0.5) -> Transform:
  """Lucid's `standard_transforms` (pad 12, jitter 8, scale 0.9..1.1, rotate
  -10..10 degrees, jitter 4) with pixel amounts scaled to a `size`-pixel
  image: a 32-pixel image gets pad 2, jitter 1, jitter 1."""
  return compose(pad(scaled_pixels(size, 12), value),
                 jitter(scaled_pixels(size, 8)),
                 scale_rotate(value=value),
                 jitter(scaled_pixels(size, 4)))


def resize(images, hw: tuple) -> jax.Array:
  """Back to the network's input (H, W): models with dense layers read one
  fixed shape. A no-op when the shape already matches."""
  b, h, w, c = images.shape
  if (h, w) == tuple(hw):
    return images
  return jax.image.resize(images, (b, *hw, c), 'linear')
