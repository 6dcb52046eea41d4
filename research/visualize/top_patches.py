"""Zeiler & Fergus's Fig. 2: for each feature map of a layer, the 9 input
patches that excite it most, each from a different image.

Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV
2014, section 4: "the top 9 activations ... across the validation data",
with "the corresponding image patches" beside their deconvnet projections.
A unit's patch is its receptive field, found here from the network itself
(`receptive_field`), so any model that sows its activations works unedited.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from research.visualize import network as network_lib


# --------------------------------------------------------- receptive field

@dataclasses.dataclass(frozen=True)
class ReceptiveField:
  """Unit (y, x) of a layer sees input rows [y * stride[0] + offset[0],
  + size[0]) and the columns likewise; the box may reach past the image's
  borders (padding). A dense layer's units see the whole image: stride 0."""
  size: tuple     # (height, width)
  stride: tuple   # (rows, cols)
  offset: tuple   # (rows, cols)

  def box(self, y, x) -> np.ndarray:
    """(..., 4) top, left, bottom, right (exclusive) of units (y, x)."""
    top = np.asarray(y) * self.stride[0] + self.offset[0]
    left = np.asarray(x) * self.stride[1] + self.offset[1]
    return np.stack(np.broadcast_arrays(top, left, top + self.size[0],
                                        left + self.size[1]), -1)


def _probes(shape, count: int = 8) -> np.ndarray:
  """(n, 2) units on a diagonal of a (rows, cols) map, from corner to corner:
  each gives one row's and one column's extent."""
  n = min(count, *shape)  # spacing >= 1, so rounding keeps them distinct
  return np.stack([np.round(np.linspace(0, side - 1, n)).astype(int)
                   for side in shape], 1)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _support(model, prepare, layer, params, images, units):
  """(N, H, W) whether pixels of images[n] move unit units[n] = (y, x) of
  `layer` (all its channels, randomly weighted so none cancel)."""
  net = network_lib.bind(model, prepare, params)
  out, vjp = jax.vjp(lambda x: net.activations(x)[layer], images)
  n, h, w = out.shape[:3]
  at = ((jnp.arange(h)[None, :, None] == units[:, 0, None, None])
        & (jnp.arange(w)[None, None, :] == units[:, 1, None, None]))
  weights = jax.random.uniform(jax.random.key(0), out.shape, out.dtype, 0.5, 1)
  grads = vjp(jnp.where(at[..., None], weights, 0).astype(out.dtype))[0]
  return jnp.any(grads != 0, axis=-1)


def _extents(support, axis: int):
  """(first, last + 1) of the rows (axis 1) or columns (axis 2) touched."""
  touched = support.any(axis=3 - axis)
  first = np.argmax(touched, axis=1)
  last = touched.shape[1] - np.argmax(touched[:, ::-1], axis=1)
  return first, last


def _fit(positions, first, last, length: int, units: int):
  """(size, stride, offset) along one axis from the measured [first, last)
  of units at `positions`, where a border may clip either end."""
  free_top, free_bottom = first > 0, last < length
  stride = (_spacing(positions, first, free_top)
            or _spacing(positions, last, free_bottom)
            or max(1, round(length / units)))  # no two unclipped: downsampling
  tops = first - positions * stride       # unit 0's top, where measurable
  bottoms = last - positions * stride     # unit 0's bottom
  extent = int(np.max(last - first))
  if free_top.any() and free_bottom.any():
    offset, bottom = tops[free_top][0], bottoms[free_bottom][0]
  elif free_top.any():  # all reach the far border: take the field symmetric
    offset = tops[free_top][0]             # about its unit's stride cell
    bottom = offset + max(extent, stride - 2 * offset)
  elif free_bottom.any():
    bottom = bottoms[free_bottom][0]
    offset = bottom - max(extent, 2 * bottom - stride)
  else:  # every unit sees the whole image
    return length, 0, 0
  return int(bottom - offset), int(stride), int(offset)


def _spacing(positions, edges, free) -> int:
  """The stride from the first and last unclipped edge; 0 if under two."""
  if free.sum() < 2:
    return 0
  i, j = np.flatnonzero(free)[[0, -1]]
  return int((edges[j] - edges[i]) // (positions[j] - positions[i]))


def receptive_field(net, layer: str, samples: int = 8,
                    seed: int = 0) -> ReceptiveField:
  """The input box each unit of `layer` sees, measured, not declared.

  A unit's gradient with respect to the input is exactly zero outside its
  receptive field; ReLUs and max pools can zero it inside too, so the support
  is the union over `samples` random images. Units along a diagonal give,
  per axis, the field's size and, from their spacing, stride and offset; units whose field a border clips are used only on their free
  side (if every unit is clipped on one side, the field is taken symmetric
  about its unit's stride cell). A layer without spatial axes sees the whole
  image.
  """
  h, w, c = net.image_shape
  shape = (1,) + net.layer_shapes[layer]
  if len(shape) != 4:
    return ReceptiveField((h, w), (0, 0), (0, 0))
  units = np.repeat(_probes(shape[1:3]), samples, axis=0)
  images = np.random.default_rng(seed).uniform(
      size=(len(units), h, w, c)).astype(np.float32)
  support = np.asarray(_support(net.model, net.prepare, layer, net.variables,
                                images, units))
  support = support.reshape(-1, samples, h, w).any(axis=1)
  fits = [_fit(units[::samples, axis - 1], *_extents(support, axis), length,
               shape[axis]) for axis, length in ((1, h), (2, w))]
  size, stride, offset = zip(*fits)
  return ReceptiveField(size, stride, offset)


# ------------------------------------------------------------ top-k units

class TopUnits:
  """Streaming top-k per channel of a layer, one maximum per image.

  The state is (values, images, positions) of shapes (C, k), (C, k),
  (C, k, 2); each batch of fixed size is merged into it by one jitted update
  (its padding rows masked out), so a split of any length compiles once.
  Images are numbered in the order the batches arrive.
  """

  def __init__(self, net, layer: str, k: int = 9):
    self.net, self.layer, self.k = net, layer, k
    self.seen = 0
    self.state = None

  def update(self, images, valid: int | None = None):
    """Merges a batch; only its first `valid` rows (default all) count."""
    images = np.asarray(images, np.float32)
    valid = len(images) if valid is None else valid
    if self.state is None:
      self.state = _empty(self.net, self.layer, self.k)
    self.state = _merge(self.net.model, self.net.prepare, self.layer,
                        self.net.variables, self.state, images,
                        np.int32(self.seen), np.int32(valid))
    self.seen += valid

  def result(self):
    """(values, image indices, positions) as numpy; -1 where fewer than k
    images were seen."""
    values, index, positions = (np.asarray(a) for a in self.state)
    return values, index, positions


def _empty(net, layer, k):
  channels = net.layer_shapes[layer][-1]
  return (jnp.full((channels, k), -jnp.inf, jnp.float32),
          jnp.full((channels, k), -1, jnp.int32),
          jnp.zeros((channels, k, 2), jnp.int32))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _merge(model, prepare, layer, params, state, images, first, valid):
  net = network_lib.bind(model, prepare, params)
  acts = net.activations(images)[layer].astype(jnp.float32)
  if acts.ndim == 2:
    acts = acts[:, None, None, :]
  b, h, w, c = acts.shape
  flat = acts.reshape(b, h * w, c)
  # One candidate per image and channel (its best position), so the k kept
  # are k different images.
  where = jnp.argmax(flat, axis=1)                                  # (b, c)
  best = jnp.max(flat, axis=1)
  best = jnp.where((jnp.arange(b) < valid)[:, None], best, -jnp.inf)
  positions = jnp.stack([where // w, where % w], -1)                # (b, c, 2)
  values, index, kept = state
  values = jnp.concatenate([values, best.T], axis=1)
  numbers = jnp.where(jnp.arange(b) < valid, first + jnp.arange(b), -1)
  index = jnp.concatenate([index, jnp.broadcast_to(numbers, (c, b))], axis=1)
  kept = jnp.concatenate([kept, positions.transpose(1, 0, 2)], axis=1)
  values, order = jax.lax.top_k(values, state[0].shape[1])
  return (values, jnp.take_along_axis(index, order, axis=1),
          jnp.take_along_axis(kept, order[..., None], axis=1))


@dataclasses.dataclass(frozen=True)
class TopPatches:
  """Per channel c, its k strongest images, best first."""
  values: np.ndarray     # (C, k) the activation
  images: np.ndarray     # (C, k) index into the split
  positions: np.ndarray  # (C, k, 2) the unit (y, x) in the layer
  boxes: np.ndarray      # (C, k, 4) its input box: top, left, bottom, right
  patches: np.ndarray    # (C, k, size_y, size_x, channels) the box's pixels
  field: ReceptiveField


def top_patches(net, layer: str, images, k: int = 9, batch_size: int = 256,
                fill: float = 0.0) -> TopPatches:
  """Zeiler & Fergus's top-k patches of every channel of `layer` over
  `images` (a split in memory, (N, H, W, C) in [0, 1]): batches of
  `batch_size` stream through `TopUnits`, then each unit's receptive field
  is cut from its image, padded with `fill` beyond the borders so every
  patch has the field's full size."""
  tracker = TopUnits(net, layer, k)
  for start in range(0, len(images), batch_size):
    batch = np.asarray(images[start:start + batch_size], np.float32)
    valid = len(batch)
    if valid < batch_size:
      batch = np.concatenate([batch, np.zeros(
          (batch_size - valid,) + batch.shape[1:], batch.dtype)])
    tracker.update(batch, valid)
  values, index, positions = tracker.result()
  field = receptive_field(net, layer)
  boxes = field.box(positions[..., 0], positions[..., 1])
  return TopPatches(values, index, positions, boxes,
                    cut_patches(images, index, boxes, fill), field)


def cut_patches(images, index, boxes, fill: float = 0.0) -> np.ndarray:
  """images[index] cropped to `boxes` (top, left, bottom, right, all of one
  size), padded with `fill` where a box leaves the image; index -1 gives a
  patch of `fill`."""
  h, w, c = np.shape(images)[1:]
  size = boxes[..., 2:] - boxes[..., :2]
  sy, sx = int(size[..., 0].max()), int(size[..., 1].max())
  pad = max(0, -int(boxes[..., :2].min()),
            int(boxes[..., 2].max()) - h, int(boxes[..., 3].max()) - w)
  out = np.full(index.shape + (sy, sx, c), fill, np.float32)
  padded = {}  # an image is often among the top of many channels
  for where in np.ndindex(index.shape):
    i = int(index[where])
    if i < 0:
      continue
    if i not in padded:
      padded[i] = np.pad(np.asarray(images[i], np.float32),
                         ((pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    top, left = boxes[where][:2] + pad
    out[where] = padded[i][top:top + sy, left:left + sx]
  return out
