"""The visualize command line's work: each command renders into a Gallery.

`run(command, options)` loads the run (training the demo's MNIST convnet
first when `demo` finds no checkpoint), calls the command (all of them for
`demo`) and writes DIR/index.html. Every picture is logged as it is written,
so a long command shows its progress.
"""
import dataclasses
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from research import checkpoints
from research import configlib
from research.data import tfds_source
from research.visualize import attribution
from research.visualize import dream
from research.visualize import examples
from research.visualize import gallery as gallery_lib
from research.visualize import network as network_lib
from research.visualize import objectives
from research.visualize import render
from research.visualize import top_patches

DEMO_CONFIG = 'configs/mnist_convnet.py:quick'


class LayerError(ValueError):
  """A layer flag names no activation of the network."""


# Errors that mean "change your command", shown as one line, not a trace.
USER_ERRORS = (FileNotFoundError, LayerError, configlib.ConfigError,
               tfds_source.DataError, checkpoints.CheckpointError)
PANEL_IMAGES = 8  # images in the occlusion, attribution and top-5 panels


@dataclasses.dataclass
class Context:
  options: object                 # the parsed flags
  net: network_lib.Network
  data: ml_collections.ConfigDict  # the run's config.data, with overrides
  config: ml_collections.ConfigDict
  gallery: gallery_lib.Gallery
  key: jax.Array

  def save(self, section: str, name: str, image, caption: str = ''):
    path = gallery_lib.save_png(self.gallery.out / name, image)
    self.gallery.add(section, path, caption)
    logging.info('wrote %s', path)
    return path


def run(command: str, options) -> str:
  if checkpoints.latest_step(options.workdir) is None:
    if command != 'demo':
      raise FileNotFoundError(
          f'No checkpoint in {options.workdir}: train a run with '
          f'--workdir={options.workdir} first (python -m research.main), or '
          'use the demo command, which trains one.')
    train_demo_model(options)
  config = network_lib.config_of(options.workdir)
  data = _data_config(config, options)
  net = network_lib.from_workdir(options.workdir, data)
  gallery = gallery_lib.Gallery(
      options.out, f'{config.model.name} ({options.workdir})')
  ctx = Context(options, net, data, config, gallery,
                jax.random.key(options.seed))
  for name in (COMMANDS if command == 'demo' else [command]):
    start = time.time()
    logging.info('%s ...', name)
    COMMANDS[name](ctx)
    logging.info('%s done in %.0f s', name, time.time() - start)
  return str(gallery.write())


def train_demo_model(options):
  """Trains configs/mnist_convnet.py:quick into --workdir."""
  from configs import mnist_convnet  # pylint: disable=g-import-not-at-top
  from research import train  # pylint: disable=g-import-not-at-top
  config = mnist_convnet.get_config('quick')
  config.data.manual_dir = options.manual_dir
  config.data.data_dir = options.data_dir
  logging.info('No checkpoint in %s: training %s there first.',
               options.workdir, DEMO_CONFIG)
  train.train_and_evaluate(config, options.workdir)


def _data_config(config, options) -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict(config.data.to_dict())
  if options.manual_dir:
    data.manual_dir = options.manual_dir
  if options.data_dir:
    data.data_dir = options.data_dir
  return data


# ------------------------------------------------------------------ layers

def feature_layers(net) -> list[str]:
  """Hidden activations after their nonlinearity, in forward order: the
  spatial (H, W, C) maps Zeiler and Fergus look into, or, for a network
  without any (Nielsen's MLP), its hidden layers."""
  shapes = {name: shape for name, shape in net.layer_shapes.items()
            if name != 'input' and not name.startswith('logits')
            and not name.endswith('pre_relu')}
  spatial = [name for name, shape in shapes.items() if len(shape) == 3]
  return spatial or list(shapes)


def _check_layer(net, name: str) -> str:
  shapes = net.layer_shapes
  if name not in shapes:
    raise LayerError(f'No layer {name!r} in this network; --layer can be one '
                     f'of: {", ".join(shapes)}.')
  return name


def zf_layer(ctx) -> str:
  """--layer, or the deepest spatial layer."""
  if ctx.options.layer:
    return _check_layer(ctx.net, ctx.options.layer)
  return feature_layers(ctx.net)[-1]


def pre_relu(net, layer: str) -> str:
  """The pre-ReLU twin of a layer if the model sows one: a dead ReLU gives no
  gradient to ascend (the Feature Visualization article's advice)."""
  twin = layer.removesuffix('relu') + 'pre_relu'
  return twin if layer.endswith('/relu') and twin in net.layer_shapes else layer


def dream_layer(ctx) -> str:
  """--dream_layer, or the spatial layer two thirds of the way up (for
  GoogLeNet near the blog's inception_4c)."""
  if ctx.options.dream_layer:
    return _check_layer(ctx.net, ctx.options.dream_layer)
  layers = feature_layers(ctx.net)
  return layers[round(2 * (len(layers) - 1) / 3)]


# ---------------------------------------------------------------- commands

def _num_classes(net) -> int:
  return net.layer_shapes['logits'][-1]


def _names(ctx) -> list[str]:
  return examples.class_names(ctx.data) or [
      str(i) for i in range(_num_classes(ctx.net))]


def _diverse(objective, layer: str, batch: int):
  return objective + 100.0 * objectives.diversity(layer) if batch > 1 else objective


def classes(ctx):
  """One picture per class from noise, maximising its logit under the
  Fourier/decorrelated-colour prior and random transformations."""
  o, names = ctx.options, _names(ctx)
  targets = jnp.arange(_num_classes(ctx.net))
  deepest = feature_layers(ctx.net)[-1] if o.batch > 1 else None
  images, trace = render.render(
      ctx.net, lambda t: _diverse(objectives.class_logit(t), deepest, o.batch),
      targets, jax.random.fold_in(ctx.key, 1), steps=o.steps, batch=o.batch)
  images = np.asarray(images)
  probs = np.asarray(ctx.net.probabilities(images.reshape((-1,) + images.shape[2:])))
  probs = probs.reshape(images.shape[:2] + (-1,))
  for t in np.asarray(targets):
    p = probs[t, :, t].mean()
    ctx.save('Class visualizations', f'classes/class_{t:04d}.png',
             gallery_lib.enlarge(gallery_lib.grid(images[t]), 128),
             f'{names[t]}: logit {float(trace[t, -1]):.1f}, the net\'s '
             f'p({names[t]}) = {p:.3f}')
  ctx.save('Class visualizations', 'classes/all.png',
           gallery_lib.enlarge(gallery_lib.grid(images.reshape(
               (-1,) + images.shape[2:]), cols=len(targets) * o.batch
               if len(targets) <= 10 else None), 512),
           f'All {len(targets)} classes, {o.steps} Adam steps each, one '
           'compiled call')


def channels(ctx):
  """Feature visualizations of the first --channels maps of a layer."""
  o = ctx.options
  layer = pre_relu(ctx.net, zf_layer(ctx))
  count = min(o.channels, ctx.net.layer_shapes[layer][-1])
  images, _ = render.render(
      ctx.net, lambda t: objectives.channel(layer, t), jnp.arange(count),
      jax.random.fold_in(ctx.key, 2), steps=o.steps)
  images = np.asarray(images)[:, 0]
  ctx.save('Feature visualizations', 'channels/grid.png',
           gallery_lib.enlarge(gallery_lib.grid(images), 512),
           f'Channels 0..{count - 1} of {layer}')


def _dream_args(ctx) -> dict:
  o = ctx.options
  # Many small tiles per call: a 28-pixel MNIST net would otherwise take
  # hundreds of calls per step on a large photograph.
  tiles_per_call = max(8, (256 // min(ctx.net.image_shape[:2])) ** 2)
  return dict(iter_n=o.iterations, octave_n=o.octaves,
              octave_scale=o.octave_scale, tiles_per_call=tiles_per_call)


def dream_photo(ctx):
  """DeepDream on a real photograph, octave by octave."""
  o, layer = ctx.options, dream_layer(ctx)
  photo = examples.photo(o.size, o.image)
  dreamed = dream.deepdream(ctx.net, photo, layer,
                            jax.random.fold_in(ctx.key, 3), **_dream_args(ctx))
  ctx.save('DeepDream', 'dream/photo.png', photo, 'The photograph')
  ctx.save('DeepDream', 'dream/dream.png', np.asarray(dreamed),
           f'Dreamed: {o.octaves} octaves x {o.iterations} steps on {layer}')


def zoom(ctx):
  """The zoom dream: each frame the last one zoomed 5% and dreamed again."""
  o, layer = ctx.options, dream_layer(ctx)
  photo = examples.photo(o.size, o.image)
  paths = dream.zoom_dream(ctx.net, photo, layer, jax.random.fold_in(ctx.key, 4),
                           ctx.gallery.out / 'zoom', frames=o.frames,
                           **_dream_args(ctx))
  ctx.gallery.add('Zoom dream', paths[-1],
                  f'{o.frames} frames, each the last one zoomed 5% and '
                  f'dreamed on {layer}')
  for path in (paths[0], paths[-2]):
    ctx.gallery.add('Zoom dream', path, path.name)


def zeiler_fergus(ctx):
  """Top-9 patches per map, occlusion, saliency, integrated gradients,
  first-layer filters, top-5 predictions."""
  o, names, layer = ctx.options, _names(ctx), zf_layer(ctx)
  spec = o.split or ctx.config.data.eval_splits.get('test', 'test')
  images, labels = examples.split_images(ctx.data, spec, o.examples,
                                         ctx.net.image_shape)
  logging.info('zeiler_fergus: %d images of %s', len(images), spec)
  found = top_patches.top_patches(ctx.net, layer, images, k=9)
  count = min(o.channels, len(found.patches))
  for c in range(count):
    ctx.save('Top-9 patches', f'zeiler_fergus/top9_{c:04d}.png',
             gallery_lib.enlarge(gallery_lib.grid(found.patches[c], cols=3), 96),
             f'{layer} map {c}: its 9 strongest activations in {spec}, '
             'each from a different image')
  panel, classes = images[:PANEL_IMAGES], _predicted(ctx, images[:PANEL_IMAGES])
  maps = {
      'occlusion': attribution.occlusion(ctx.net, panel, classes,
                                         size=max(2, panel.shape[1] // 4),
                                         stride=max(1, panel.shape[1] // 16)),
      'saliency': attribution.saliency(ctx.net, panel, classes),
      'integrated_gradients': np.abs(attribution.integrated_gradients(
          ctx.net, panel, classes)).sum(-1),
  }
  for kind, heat in maps.items():
    overlays = [gallery_lib.heat_overlay(image, h) for image, h in zip(panel, heat)]
    ctx.save('Where the network looks', f'zeiler_fergus/{kind}.png',
             gallery_lib.enlarge(gallery_lib.grid(np.stack(overlays)), 512),
             f'{kind.replace("_", " ")} for the predicted class '
             f'({", ".join(names[c] for c in classes)})')
  _first_layer_filters(ctx)
  path = ctx.gallery.out / 'zeiler_fergus' / 'top5.png'
  attribution.top5_panel(ctx.net, panel, names, path=path,
                         labels=labels[:PANEL_IMAGES] if labels.ndim == 1 else None)
  ctx.gallery.add('Top-5 predictions', path, f'Top-5 predictions on {spec}')


def _first_layer_filters(ctx):
  try:
    filters = attribution.first_layer_filters(ctx.net)
  except ValueError as e:  # no convolution (an MLP): nothing to draw
    logging.info('No first-layer filters: %s', e)
    return
  ctx.save('First-layer filters', 'zeiler_fergus/filters.png',
           gallery_lib.enlarge(gallery_lib.grid(filters), 384),
           f'{len(filters)} first-layer filters')


def _predicted(ctx, images) -> np.ndarray:
  return np.asarray(jnp.argmax(ctx.net.logits(images), axis=-1))


COMMANDS = {'classes': classes, 'channels': channels, 'dream': dream_photo,
            'zoom': zoom, 'zeiler_fergus': zeiler_fergus}
