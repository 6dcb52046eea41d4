"""`config.init_from`: start a run from weights trained elsewhere.

PATH is a BVLC caffemodel (research/caffe: bvlc_alexnet or bvlc_googlenet)
or a workdir of this repo's (its newest checkpoint). A caffemodel brings the
arithmetic it was trained with, which `configure` writes into the run's
config (so config.json says what ran): Caffe's LRN for AlexNet and its input
preparation (pixels in 0..255 minus BVLC's mean). `merge` puts the weights
into the freshly initialised params: a layer whose output size is the class
count keeps its initialisation when the run has another number of classes
(fine-tuning), any other shape that differs is refused naming the layer.
"""
import dataclasses
import pathlib

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from research import checkpoints
from research import configlib


@dataclasses.dataclass(frozen=True)
class Source:
  params: dict         # nested dicts of numpy arrays
  num_classes: int     # the source net's
  model: dict          # model fields the weights need (caffemodels)
  data: dict           # config.data fields they were trained with
  description: str


def load(path: str) -> Source:
  path = pathlib.Path(path)
  if path.suffix == '.caffemodel':
    from research.caffe import imported  # pylint: disable=g-import-not-at-top
    net = imported.load(path)
    data = {k: v for k, v in net.data.items()
            if k in ('pixel_scale', 'pixel_mean', 'channels')}
    return Source(net.params, net.model['num_classes'], net.model, data,
                  f'{path} ({net.kind}, sha1 {net.sha1[:12]})')
  if path.is_dir():
    state, step = checkpoints.load_latest(path)
    params = jax.device_get(state['params'])
    return Source(params, _classes(params), {}, {},
                  f'{path} (step {step})')
  raise configlib.ConfigError(
      f'config.init_from={str(path)!r} is neither a .caffemodel file nor a '
      'workdir: pass --config.init_from=bvlc_alexnet.caffemodel (or '
      'bvlc_googlenet) or the workdir of an earlier run.')


def _classes(params) -> int:
  """The output size of the last layer created: the class count."""
  leaves = traverse_util.flatten_dict(params)
  bias = [v for k, v in leaves.items() if k[-1] == 'bias']
  return int(np.shape(bias[-1])[-1]) if bias else 0


def configure(config, source: Source):
  """The run's config with what the source's weights need, each change
  logged: its model fields (but num_classes, the run's own) and input
  preparation. The source's model must be the config's model."""
  name = source.model.get('name')
  if name and name != config.model.name:
    raise configlib.ConfigError(
        f'config.init_from holds a {name} and the config trains a '
        f'{config.model.name}: use configs/{name}.py.')
  changes = {f'model.{k}': v for k, v in source.model.items()
             if k not in ('name', 'num_classes')}
  changes.update({f'data.{k}': v for k, v in source.data.items()})
  for key, value in changes.items():
    section, field = key.split('.')
    old = config[section].get(field)
    if old is None and field not in config[section]:
      raise configlib.ConfigError(
          f'config.init_from needs config.{key}={value!r}, which this config '
          'does not declare.')
    if _comparable(old) != _comparable(value):
      logging.info('init_from %s: config.%s %r -> %r, as the weights were '
                   'trained.', source.description, key, old, value)
      config[section][field] = value
  return config


def _comparable(value):
  return tuple(value) if isinstance(value, (list, tuple)) else value


def merge(params, source: Source, num_classes: int):
  """`params` (the model's, initialised) with the source's weights."""
  ours = traverse_util.flatten_dict(params, sep='/')
  theirs = traverse_util.flatten_dict(source.params, sep='/')
  merged, kept = {}, []
  for name, initial in ours.items():
    if name not in theirs:
      kept.append(name)
      merged[name] = initial
      continue
    weights = np.asarray(theirs[name])
    if weights.shape == initial.shape:
      merged[name] = jax.device_put(weights.astype(initial.dtype),
                                    initial.sharding)
    elif (weights.shape[:-1] == initial.shape[:-1]
          and weights.shape[-1] == source.num_classes
          and initial.shape[-1] == num_classes):
      kept.append(name)  # a classifier, fine-tuned to the run's classes
      merged[name] = initial
    else:
      raise configlib.ConfigError(
          f'config.init_from: {name} is {weights.shape} in '
          f'{source.description} but {tuple(initial.shape)} in this model. '
          'Use the input size and layer sizes the weights were trained with '
          '(AlexNet 227, GoogLeNet 224).')
  unused = sorted(set(theirs) - set(ours))
  logging.info('init_from %s: %d of %d arrays loaded%s%s', source.description,
               len(ours) - len(kept), len(ours),
               f'; initialised afresh (num_classes {source.num_classes} -> '
               f'{num_classes}, or not in the source): {", ".join(kept)}'
               if kept else '',
               f'; not used: {", ".join(unused)}' if unused else '')
  return traverse_util.unflatten_dict(merged, sep='/')
