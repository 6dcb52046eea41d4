"""DeepDream on photographs of any size, and its zooming video.

Mordvintsev, Olah, Tyka, "Inceptionism: Going Deeper into Neural Networks",
Google Research blog, 2015, and its code, the google/deepdream Caffe notebook
(dream.ipynb): gradient ascent on the image with steps
`step_size / mean(|g|) * g`, a random roll of up to 32 pixels before each
gradient (undone after), iter_n = 10 steps at each of octave_n = 4 scales
1.4 apart, of which only the detail (dreamed minus the octave's own image) is
carried up to the next, clipping to the pixel range, and a video whose every
frame is the previous one zoomed in by s = 0.05 and dreamed again.

Our models end in dense layers, so they read images of exactly
`net.image_shape[:2]`; a larger (or smaller) image is dreamed on through
fixed tiles of that size, as the TensorFlow DeepDream tutorial
(tensorflow/examples/tutorials/deepdream, `calc_grad_tiled`) does for big
images with its 512-pixel tiles: roll the image, cut it into tiles, take each
tile's gradient, put them back, roll back. Here the tiles always have one
shape and go to the network in batches of a fixed `tiles_per_call`, so one
compiled gradient serves every octave and every frame (../shared/pitfalls.md:
each new input shape recompiles); memory is bounded by that batch, which is
how 1024-pixel photos fit on an accelerator.

Images are float (H, W, C) in [0, 1]. When C differs from the network's
channels, the network sees the channel mean (an RGB photo through an MNIST
net) or the grey image repeated (a grey image through an RGB net); the
conversion is differentiated through, so the gradient reaching the photo is
the grey gradient spread equally over its channels.
"""
import dataclasses
import functools
import pathlib
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from research.visualize import gallery
from research.visualize import objectives as objectives_lib

CAFFE_JITTER = 32      # pixels, for GoogLeNet ...
CAFFE_FIELD = 224      # ... whose images are this wide


def default_jitter(tile) -> int:
  """The Caffe notebook's 32-pixel jitter, scaled down for tiles smaller
  than GoogLeNet's 224 pixels (5 pixels for a 32-pixel tile)."""
  return max(1, min(CAFFE_JITTER, round(CAFFE_JITTER * min(tile) / CAFFE_FIELD)))


def _channel_adapter(image_channels: int, net_channels: int) -> Callable:
  if image_channels == net_channels:
    return lambda x: x
  if net_channels == 1:
    return lambda x: jnp.mean(x, axis=-1, keepdims=True)
  if image_channels == 1:
    return lambda x: jnp.repeat(x, net_channels, axis=-1)
  raise ValueError(f'Cannot show {image_channels}-channel images to a network '
                   f'that reads {net_channels} channels.')


@dataclasses.dataclass(frozen=True, eq=False)
class TiledGradient:
  """The gradient of a per-tile objective, for images of any size.

  `fn(params, tiles)` is the one jitted function: (tiles_per_call, th, tw, C)
  tiles -> (per-tile objective values, their gradients). Each tile's value is
  the objective of that tile alone, so padding tiles change nothing.
  """
  fn: Callable
  params: Any
  tile: tuple              # (th, tw)
  tiles_per_call: int
  channels: int            # of the images it takes

  def __call__(self, image, shift=(0, 0)):
    """(mean objective over the tiles, gradient shaped like `image`) of the
    image rolled by `shift` (rows, columns); the gradient is rolled back."""
    shift = jnp.asarray(shift, jnp.int32)
    chunks = _cut(image, shift, self.tile, self.tiles_per_call)
    outs = [self.fn(self.params, chunk) for chunk in chunks]
    return _value_and_paste([v for v, _ in outs], [g for _, g in outs], shift,
                            image.shape, self.tile)


def tiled_gradient(net, objective, channels: int | None = None,
                   tile: tuple | None = None,
                   tiles_per_call: int = 8) -> TiledGradient:
  """A `TiledGradient` of `objective` (an Objective, or a layer name for
  DeepDream's `objectives.layer`) for images with `channels` channels
  (default the network's). `tile` must be a size the network reads: its
  `image_shape[:2]` (the default) for models with dense layers."""
  objective = _as_objective(objective)
  tile = tuple(tile or net.image_shape[:2])
  channels = channels or net.image_shape[-1]
  to_net = _channel_adapter(channels, net.image_shape[-1])

  def total(params, tiles):
    acts = dataclasses.replace(net, variables=params).activations(to_net(tiles))
    # Each tile scored alone (vmap over the batch of activations) keeps the
    # tiles independent, whatever the objective does with a batch.
    values = jax.vmap(lambda a: objective(
        jax.tree.map(lambda v: v[None], a)))(acts)
    return jnp.sum(values), values

  grad = jax.grad(total, argnums=1, has_aux=True)
  # The weights are an argument, not constants folded into the program: an
  # Inception's 27 MB would otherwise be compiled in.
  fn = jax.jit(lambda params, tiles: grad(params, tiles)[::-1])
  return TiledGradient(fn, net.variables, tile, tiles_per_call, channels)


def _as_objective(objective) -> objectives_lib.Objective:
  if isinstance(objective, str):
    return objectives_lib.layer(objective)
  if not isinstance(objective, objectives_lib.Objective):
    raise TypeError(f'Expected an Objective or a layer name, got {objective!r}.')
  return objective


@functools.partial(jax.jit, static_argnums=(2, 3))
def _cut(image, shift, tile, per_call) -> tuple:
  """The rolled image, padded by mirroring to whole tiles, as a tuple of
  (per_call, th, tw, C) batches, the last padded with black tiles."""
  h, w, c = image.shape
  (th, tw), (nh, nw) = tile, _counts(image.shape, tile)
  x = jnp.roll(image, shift, axis=(0, 1))
  x = jnp.pad(x, ((0, nh * th - h), (0, nw * tw - w), (0, 0)), 'symmetric')
  x = x.reshape(nh, th, nw, tw, c).transpose(0, 2, 1, 3, 4)
  x = x.reshape(nh * nw, th, tw, c)
  calls = -(-(nh * nw) // per_call)
  x = jnp.pad(x, ((0, calls * per_call - nh * nw),) + ((0, 0),) * 3)
  return tuple(x.reshape(calls, per_call, th, tw, c))


def _paste(grads, shift, shape, tile):
  """`_cut` undone on the gradients: padding tiles and pixels dropped."""
  h, w, c = shape
  (th, tw), (nh, nw) = tile, _counts(shape, tile)
  g = jnp.concatenate(grads)[:nh * nw].reshape(nh, nw, th, tw, c)
  g = g.transpose(0, 2, 1, 3, 4).reshape(nh * th, nw * tw, c)[:h, :w]
  return jnp.roll(g, -shift, axis=(0, 1))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _value_and_paste(values, grads, shift, shape, tile):
  count = np.prod(_counts(shape, tile))
  return (jnp.mean(jnp.concatenate(values)[:count]),
          _paste(grads, shift, shape, tile))


def _counts(shape, tile) -> tuple:
  return -(-shape[0] // tile[0]), -(-shape[1] // tile[1])


@functools.partial(jax.jit, static_argnums=(3,))
def _ascend(image, grads, shift, tile, step_size):
  """The Caffe notebook's step on the pasted gradient, normalised by its mean
  size so that every layer and octave moves pixels by about `step_size`."""
  grad = _paste(grads, shift, image.shape, tile)
  scale = step_size / jnp.maximum(jnp.mean(jnp.abs(grad)), 1e-12)
  return jnp.clip(image + scale * grad, 0.0, 1.0)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _shift(key, longer, tile, jitter):
  """Caffe's jitter, plus, along an axis longer than a tile, a random offset
  of the tile grid (the TF tutorial's roll) so tile seams never stay put."""
  jitter_key, grid_key = jax.random.split(key)
  shift = jax.random.randint(jitter_key, (2,), -jitter, jitter + 1)
  grid = jax.random.randint(grid_key, (2,), 0, jnp.asarray(tile))
  return shift + jnp.where(longer, grid, 0)


def octave_shapes(shape, octave_n: int = 4, octave_scale: float = 1.4) -> list:
  """(H, W) of each octave, the image's own first, each `octave_scale` times
  smaller than the last (rounded like the notebook's scipy zoom)."""
  shapes = [tuple(shape[:2])]
  for _ in range(octave_n - 1):
    shapes.append(tuple(max(1, round(n / octave_scale)) for n in shapes[-1]))
  return shapes


def _linear_weights(size_in: int, size_out: int, scale: float,
                    translation: float) -> np.ndarray:
  """(size_out, size_in) bilinear weights, made on the host: the matrix
  `jax.image.scale_and_translate` builds in-graph (triangle kernel,
  antialiased when shrinking), whose compilation for every octave size
  would cost more than the dream."""
  kernel_scale = max(1.0 / scale, 1.0)
  at = (np.arange(size_out) + 0.5 - translation) / scale - 0.5
  w = np.maximum(0, 1 - np.abs(at[:, None] - np.arange(size_in)) / kernel_scale)
  w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
  return (w * ((at >= -0.5) & (at <= size_in - 0.5))[:, None]).astype(np.float32)


def _resize_weights(shape_in, shape_out) -> tuple:
  return tuple(_linear_weights(n, m, m / n, 0.0)
               for n, m in zip(shape_in[:2], shape_out[:2]))


@jax.jit
def _resample(image, weights):
  wy, wx = weights
  return jnp.einsum('yh,hwc,xw->yxc', wy, image, wx,
                    precision=jax.lax.Precision.HIGHEST)


def _resize(image, hw):
  return _resample(image, _resize_weights(image.shape, hw))


@jax.jit
def _carry(dreamed, base, next_base, weights):
  """The notebook's octave change: only the detail goes up a scale."""
  return next_base + _resample(dreamed - base, weights)


def deepdream(net, image, objective, key, *, iter_n: int = 10,
              octave_n: int = 4, octave_scale: float = 1.4,
              step_size: float = 1.5 / 255, jitter: int | None = None,
              tile: tuple | None = None, tiles_per_call: int = 8,
              gradient: TiledGradient | None = None) -> jax.Array:
  """The Caffe notebook's `deepdream`: `image` (H, W, C) in [0, 1] -> the
  dreamed float32 image of the same shape.

  `objective` is an Objective or a layer name (maximise the mean squared
  activation, the blog's "whatever you see there, I want more of it"); pass
  `gradient` (from `tiled_gradient`, then `objective`, `tile` and
  `tiles_per_call` are ignored) to reuse one compiled gradient across calls.
  `step_size` is the notebook's 1.5 in [0, 1] pixel units; `jitter` defaults
  to `default_jitter(tile)`. Step i of octave k draws its randomness from
  `fold_in(fold_in(key, k), i)`: the same key gives the same dream.
  """
  image = jnp.asarray(image, jnp.float32)
  if gradient is None:
    gradient = tiled_gradient(net, objective, image.shape[-1], tile,
                              tiles_per_call)
  if image.ndim != 3 or image.shape[-1] != gradient.channels:
    raise ValueError(f'The gradient takes (H, W, {gradient.channels}) images, '
                     f'not {image.shape}.')
  jitter = default_jitter(gradient.tile) if jitter is None else jitter
  shapes = octave_shapes(image.shape, octave_n, octave_scale)
  bases = [image] + [_resize(image, hw) for hw in shapes[1:]]
  bases.reverse()
  dreamed = bases[0]
  for k, base in enumerate(bases):
    if k:
      dreamed = _carry(dreamed, bases[k - 1], base,
                       _resize_weights(dreamed.shape, base.shape))
    for i in range(iter_n):
      dreamed = _step(gradient, dreamed, jax.random.fold_in(
          jax.random.fold_in(key, k), i), jitter, step_size)
  return dreamed


def _step(gradient, image, key, jitter, step_size):
  """Roll, tile gradients, roll back, step (the notebook's `make_step`)."""
  longer = np.greater(image.shape[:2], gradient.tile)
  shift = _shift(key, longer, gradient.tile, jitter)
  chunks = _cut(image, shift, gradient.tile, gradient.tiles_per_call)
  grads = [gradient.fn(gradient.params, chunk)[1] for chunk in chunks]
  return _ascend(image, grads, shift, gradient.tile, step_size)


def zoom(image, s: float = 0.05) -> jax.Array:
  """The notebook's zoom, `nd.affine_transform(frame, [1-s, 1-s, 1],
  [h*s/2, w*s/2, 0], order=1)`: the centre (1 - s) of the image, resized
  (bilinear) back to the image's size."""
  image = jnp.asarray(image, jnp.float32)
  scale = 1.0 / (1.0 - s)
  return _resample(image, tuple(_linear_weights(n, n, scale, n / 2 * (1 - scale))
                                for n in image.shape[:2]))


def zoom_dream(net, image, objective, key, out_dir, *, frames: int = 100,
               s: float = 0.05, fps: float = 10.0, gif_side: int | None = 512,
               progress: Callable | None = None, **dream_args) -> list:
  """The notebook's video: frame 0 is `deepdream(image)`, frame n is
  `deepdream(zoom(frame n-1, s))`, with key `fold_in(key, n)`. Writes
  OUT_DIR/frame_0000.png, ... and OUT_DIR/zoom.gif (frames shrunk to at most
  `gif_side` pixels, None for full size), logs a line per frame, calls
  `progress(n, frame)` if given, and returns the paths, the GIF last.

  `dream_args` go to `deepdream`; one compiled gradient serves all frames.
  """
  out_dir = pathlib.Path(out_dir)
  frame = jnp.asarray(image, jnp.float32)
  if dream_args.get('gradient') is None:
    dream_args['gradient'] = tiled_gradient(
        net, objective, frame.shape[-1], dream_args.pop('tile', None),
        dream_args.pop('tiles_per_call', 8))
  paths, small = [], []
  for n in range(frames):
    start = time.time()
    if n:
      frame = zoom(frame, s)
    frame = deepdream(net, frame, objective, jax.random.fold_in(key, n),
                      **dream_args)
    picture = np.asarray(frame)
    paths.append(gallery.save_png(out_dir / f'frame_{n:04d}.png', picture))
    small.append(_shrink(gallery.to_uint8(picture), gif_side))
    logging.info('zoom frame %d/%d: %s (%.1f s)', n + 1, frames, paths[-1],
                 time.time() - start)
    if progress is not None:
      progress(n, picture)
  frames_01 = (_with_channel_axis(f) / 255.0 for f in small)
  paths.append(gallery.save_gif(out_dir / 'zoom.gif', frames_01, fps))
  return paths


def _shrink(picture: np.ndarray, side: int | None) -> np.ndarray:
  """A uint8 picture with its longer side at most `side` (frames are kept
  small until the GIF is written: 100 full-size frames would not be)."""
  h, w = picture.shape[:2]
  if side is None or max(h, w) <= side:
    return picture
  size = (max(1, round(w * side / max(h, w))), max(1, round(h * side / max(h, w))))
  return np.asarray(Image.fromarray(picture).resize(size, Image.BILINEAR))


def _with_channel_axis(picture: np.ndarray) -> np.ndarray:
  return picture[..., None] if picture.ndim == 2 else picture
