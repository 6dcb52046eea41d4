"""The visualize command line's work: each command renders into a Gallery.

`run(command, options)` loads the run (training the demo's MNIST convnet
first when `demo` finds no checkpoint), calls the command (all of them for
`demo`) and writes DIR/index.html. Every picture is logged as it is written,
so a long command shows its progress.
"""
import contextlib
import dataclasses
import functools
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from research import checkpoints
from research import errors
from research import workdir as workdir_lib
from research.data import imagenet_classes
from research.visualize import attribution
from research.visualize import dream
from research.visualize import examples
from research.visualize import gallery as gallery_lib
from research.visualize import network as network_lib
from research.visualize import objectives
from research.visualize import render
from research.visualize import top_patches

DEMO_CONFIG = 'configs/mnist_convnet.py:quick'
REPO = pathlib.Path(__file__).resolve().parents[2]


class LayerError(errors.UserError, ValueError):
  """A layer flag names no activation of the network."""


class OptionsError(errors.UserError, ValueError):
  """Flags that do not fit together; the message says what to pass."""


# Errors that mean "change your command", shown as one line, not a trace.
# An image or a file named on the command line that is not there is the
# user's to fix, too.
USER_ERRORS = (errors.UserError, FileNotFoundError)
DREAM_LAYER = 'inception_4c/output'  # google/deepdream's, where a net has it
# The classes command's default for ImageNet nets (1000 classes would take
# hours on a CPU): the articles' dumbbells, and a few more.
IMAGENET_CLASSES = ('dumbbell', 'banana', 'goldfish', 'flamingo', 'pug',
                    'tarantula', 'pizza', 'volcano')


@dataclasses.dataclass
class Context:
  options: object                 # the parsed flags
  net: network_lib.Network
  # The run's config.data (with the flags' overrides) and config; None for
  # imported weights.
  data: ml_collections.ConfigDict | None
  config: ml_collections.ConfigDict | None
  gallery: gallery_lib.Gallery
  key: jax.Array

  def save(self, section: str, name: str, image, caption: str = ''):
    path = gallery_lib.save_png(self.gallery.out / name, image)
    self.gallery.add(section, path, caption)
    logging.info('wrote %s', path)
    return path


def load(options):
  """(network, its run's config or None, config.data or None) from
  --weights (a caffemodel) or --workdir (a run of research.main)."""
  if options.weights and options.workdir:
    raise OptionsError('Pass --weights=FILE.caffemodel or --workdir=RUN, not '
                       'both.')
  if options.weights:
    return network_lib.from_caffemodel(options.weights), None, None
  if not options.workdir:
    raise OptionsError('Pass --workdir=RUN (a run of python -m research.main) '
                       'or --weights=FILE.caffemodel (BVLC AlexNet or '
                       'GoogLeNet).')
  if checkpoints.latest_step(options.workdir) is None:
    raise FileNotFoundError(
        f'No checkpoint in {options.workdir}: train a run with '
        f'--workdir={options.workdir} first (python -m research.main), or '
        'use the demo command, which trains one.')
  config = network_lib.config_of(options.workdir)
  data = _data_config(config, options)
  net = network_lib.from_workdir(options.workdir, data)
  names = examples.class_names(data)
  if names:
    net = dataclasses.replace(
        net, class_names=tuple(imagenet_classes.display_names(names)))
  return net, config, data


def reading(options):
  """The visualize commands read a run: they share its workdir's lock with
  each other, never with a run training there (research/workdir.py)."""
  if not options.workdir:
    return contextlib.nullcontext()
  return workdir_lib.lock(checkpoints.absolute(options.workdir),
                          'research.visualize', shared=True)


def run(command: str, options) -> str:
  if (command == 'demo' and options.workdir
      and checkpoints.latest_step(options.workdir) is None):
    train_demo_model(options)  # holds the workdir's lock while it trains
  with reading(options):
    net, config, data = load(options)
    source = options.weights or options.workdir
    gallery = gallery_lib.Gallery(options.out, f'{net.model.name} ({source})')
    ctx = Context(options, net, data, config, gallery,
                  jax.random.key(options.seed))
    for name in (COMMANDS if command == 'demo' else [command]):
      start = time.time()
      logging.info('%s ...', name)
      COMMANDS[name](ctx)
      logging.info('%s done in %.0f s', name, time.time() - start)
    return str(gallery.write())


def classify(options) -> str:
  """Each image's top-5 classes, one line each; with --save, every image's
  logits in an .npz as `logits` (N, classes)."""
  if not options.images:
    raise OptionsError('classify needs --images=A.jpg,B.png (or a folder).')
  with reading(options):
    net, _, _ = load(options)
  if net.layer_shapes.get('logits') is None:
    raise OptionsError(f'{net.model.name} has no single classifier (its '
                       'logits are a dict): classify takes class logits.')
  paths = examples.image_paths(options.images)
  images = np.stack([examples.evaluation_view(p, net.image_shape,
                                              net.resize_to) for p in paths])
  chunks = np.array_split(images, -(-len(images) // 32))
  logits = np.concatenate([np.asarray(_logits(net.model, net.prepare,
                                              net.variables, chunk))
                           for chunk in chunks])
  names = net.class_names or tuple(str(i) for i in range(logits.shape[-1]))
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  lines = []
  for path, p in zip(paths, probs):
    top = np.argsort(-p, kind='stable')[:5]
    lines.append(f'{path}: ' + ', '.join(f'{names[c]} ({c}) {p[c]:.4f}'
                                         for c in top))
  if options.save:
    np.savez(options.save, logits=logits,
             paths=np.array([str(p) for p in paths]))
    lines.append(f'Wrote the logits, {logits.shape}, to {options.save}')
  return '\n'.join(lines)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _logits(model, prepare, variables, images):
  return network_lib.bind(model, prepare, variables).logits(images)


def train_demo_model(options):
  """Trains configs/mnist_convnet.py:quick into --workdir, through the
  training command itself (its progress shows here)."""
  logging.info('No checkpoint in %s: training %s there first.',
               options.workdir, DEMO_CONFIG)
  args = [sys.executable, '-m', 'research.main',
          f'--config={REPO / DEMO_CONFIG}', f'--workdir={options.workdir}']
  if options.manual_dir:
    args.append(f'--config.data.manual_dir={options.manual_dir}')
  if options.data_dir:
    args.append(f'--config.data.data_dir={options.data_dir}')
  code = subprocess.run(args, check=False).returncode
  if code:
    raise OptionsError(f'Training the demo\'s model ({DEMO_CONFIG}) failed '
                       f'(exit {code}); its message is above.')


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
  if DREAM_LAYER in ctx.net.layer_shapes:
    return DREAM_LAYER
  layers = feature_layers(ctx.net)
  return layers[round(2 * (len(layers) - 1) / 3)]


# ---------------------------------------------------------------- commands

def _num_classes(net) -> int:
  return net.layer_shapes['logits'][-1]


def _names(ctx) -> list[str]:
  return list(ctx.net.class_names) or [
      str(i) for i in range(_num_classes(ctx.net))]


def _targets(ctx) -> np.ndarray:
  """--classes (names, WordNet ids or indices); by default every class, or
  for an ImageNet net IMAGENET_CLASSES."""
  count, names = _num_classes(ctx.net), ctx.net.class_names
  imagenet = len(names) == 1000
  wanted = ctx.options.classes or (IMAGENET_CLASSES if imagenet
                                   else range(count))
  out = []
  for query in map(str, wanted):
    if imagenet:
      out.append(imagenet_classes.index(query))
    elif query.isdigit() and int(query) < count:
      out.append(int(query))
    elif query in names:
      out.append(names.index(query))
    else:
      raise OptionsError(f'--classes={query}: this net has the classes '
                         f'0..{count - 1} ({", ".join(_names(ctx)[:10])}).')
  return np.asarray(out)


def _diverse(objective, layer: str, batch: int):
  return objective + 100.0 * objectives.diversity(layer) if batch > 1 else objective


def classes(ctx):
  """One picture per class from noise, maximising its logit under the
  Fourier/decorrelated-colour prior and random transformations."""
  o, names = ctx.options, _names(ctx)
  targets = jnp.asarray(_targets(ctx))
  deepest = feature_layers(ctx.net)[-1] if o.batch > 1 else None
  images, trace = render.render(
      ctx.net, lambda t: _diverse(objectives.class_logit(t), deepest, o.batch),
      targets, jax.random.fold_in(ctx.key, 1), steps=o.steps, batch=o.batch)
  images = np.asarray(images)
  probs = np.asarray(ctx.net.probabilities(images.reshape((-1,) + images.shape[2:])))
  probs = probs.reshape(images.shape[:2] + (-1,))
  for i, t in enumerate(np.asarray(targets)):
    p = probs[i, :, t].mean()
    ctx.save('Class visualizations', f'classes/class_{t:04d}.png',
             gallery_lib.enlarge(gallery_lib.grid(images[i]), 128),
             f'{names[t]}: logit {float(trace[i, -1]):.1f}, the net\'s '
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
  if o.images:
    spec = o.images
    paths = examples.image_paths(o.images)[:o.examples]
    images = np.stack([examples.evaluation_view(p, ctx.net.image_shape,
                                                ctx.net.resize_to)
                       for p in paths])
    labels = np.zeros((0,), np.int32)  # the user's photos have none
  elif ctx.data is None:
    raise OptionsError('zeiler_fergus on imported weights needs '
                       '--images=DIR: a folder of photos to search (top-9 '
                       'patches need at least 9).')
  else:
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
  panel = images[:o.panel]
  classes = _predicted(ctx, panel)
  maps = {
      'occlusion': attribution.occlusion(ctx.net, panel, classes,
                                         size=max(2, panel.shape[1] // 4),
                                         stride=max(1, panel.shape[1] // 16)),
      'saliency': attribution.saliency(ctx.net, panel, classes),
      'integrated_gradients': np.abs(attribution.integrated_gradients(
          ctx.net, panel, classes, steps=o.attribution_steps)).sum(-1),
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
                         labels=labels[:o.panel]
                         if labels.ndim == 1 and len(labels) else None)
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
