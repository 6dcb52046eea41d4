"""A trained model seen as a function of images, with its named activations.

Visualization code works on images in [0, 1], shaped (B, H, W, C) as the
dataset stores them (C = 1 for MNIST). `Network.activations` runs the model's
own input preparation (scaling, mean, grey to RGB) and returns every
activation the model sows in 'intermediates' under its '/'-joined path
('conv1/relu', 'inception_4c/output', 'hidden0'), the logits as 'logits'
('logits/length', 'logits/digits' for a model returning a dict) and the
images themselves as 'input'. No model is edited for this: they all sow.
"""
import dataclasses
import functools
import json
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections

from research import checkpoints
from research import models
from research.data import prepare as prepare_lib


@dataclasses.dataclass(frozen=True)
class Network:
  model: Any                   # a flax.linen module
  variables: Any               # {'params': ...} and any 'batch_stats'
  image_shape: tuple           # (H, W, C) of the [0, 1] images it reads
  prepare: Callable = prepare_lib.to_float   # [0, 1] images -> model input
  class_names: tuple = ()      # one per output class, where known
  # Evaluation view of an image of another size: its shorter side resized
  # to this, then the centre crop (0: resized to image_shape as it is).
  resize_to: int = 0

  @property
  def params(self):
    return self.variables['params']

  def activations(self, images) -> dict:
    """{name: array with a leading batch axis} for a (B, H, W, C) batch."""
    out, state = self.model.apply(self.variables, self.prepare(images),
                                  train=False, mutable=['intermediates'])
    acts = {'/'.join(path): value[0] for path, value in
            flax.traverse_util.flatten_dict(state['intermediates']).items()}
    if isinstance(out, dict):
      acts.update({f'logits/{k}': v for k, v in out.items()})
    else:
      acts['logits'] = out
    acts['input'] = images
    return acts

  def logits(self, images) -> jax.Array:
    """(B, classes) logits; a model returning a dict must use activations."""
    return self.model.apply(self.variables, self.prepare(images), train=False)

  def probabilities(self, images) -> jax.Array:
    return jax.nn.softmax(self.logits(images), axis=-1)

  @functools.cached_property
  def layer_shapes(self) -> dict:
    """{name: shape of one image's activation}, in the order the model
    computes them (one forward pass of a blank image, once per network)."""
    acts = self.activations(jnp.zeros((1,) + tuple(self.image_shape)))
    return {name: tuple(a.shape[1:]) for name, a in acts.items()}


def bind(model, prepare, variables) -> Network:
  """The network inside a function jitted with `model` and `prepare` static
  and `variables` traced, so the weights are an argument of the compiled
  program rather than constants folded into it."""
  return Network(model, variables, (), prepare)


def config_of(workdir) -> ml_collections.ConfigDict:
  """The config a run saved in workdir/config.json."""
  path = checkpoints.absolute(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'{path} does not exist: --workdir must be a '
                            'directory written by python -m research.main.')
  return ml_collections.ConfigDict(_tuples(json.loads(path.read_text())))


def _tuples(tree):
  """JSON's lists back to the tuples configs hold (hashable module fields)."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def image_shape_of(config, stored_shape: tuple) -> tuple:
  """(H, W, C) of the [0, 1] images the model reads: the dataset's stored
  shape, resized to config.data.image_size when the run set one."""
  h, w, c = stored_shape
  size = config.data.image_size
  return (size, size, c) if size else (h, w, c)


def from_workdir(workdir, data_config=None,
                 stored_shape: tuple | None = None) -> Network:
  """The network of a run's newest checkpoint. `stored_shape` is the
  dataset's (H, W, C); None reads it from the prepared TFDS dataset of
  `data_config` (default: the run's config.data)."""
  config = config_of(workdir)
  d = config.data if data_config is None else data_config
  state, _ = checkpoints.load_latest(workdir)
  if stored_shape is None:
    from research.data import tfds_source  # pylint: disable=g-import-not-at-top
    stored_shape = tuple(tfds_source.prepared_builder(d).info
                         .features['image'].shape)
  prepare = prepare_lib.from_config(d)
  variables = {'params': state['params'],
               **({'batch_stats': state['batch_stats']}
                  if state.get('batch_stats') else {})}
  return Network(models.build(config.model), variables,
                 image_shape_of(config, stored_shape), prepare,
                 resize_to=d.resize_to if d.streaming else 0)


def from_caffemodel(path) -> Network:
  """A BVLC AlexNet or GoogLeNet from its caffemodel (research/caffe), with
  Caffe's input preparation and ImageNet's class names."""
  from research.caffe import imported  # pylint: disable=g-import-not-at-top
  from research.data import imagenet_classes  # pylint: disable=g-import-not-at-top
  net = imported.load(path)
  d = net.data
  prepare = prepare_lib.make_prepare(0, d['channels'], d['pixel_scale'],
                                     d['pixel_mean'])
  size = d['image_size']
  names = (tuple(imagenet_classes.names())
           if net.model['num_classes'] == 1000 else ())
  return Network(models.build(net.model), {'params': net.params},
                 (size, size, 3), prepare, names, d['resize_to'])
