"""A BVLC caffemodel as this repo's network: `load(path)` returns the model
fields, the input preparation and the params, so an imported net computes
what Caffe computed with no flag to set.

The arithmetic carried with the weights (papers.md, the BVLC model zoo):
Caffe's LRN (k = 1, alpha / n) for AlexNet (GoogLeNet always uses it); input
pixels in 0..255 minus the mean (104, 117, 123) BGR, which is (123, 117, 104)
here, the first convolution having been turned to read RGB; a 227x227 input
for AlexNet, 224x224 for GoogLeNet, from a shorter side of 256.
"""
import dataclasses
import hashlib
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import logging

from research import models
from research.caffe import bvlc
from research.caffe import caffemodel
from research.caffe.caffemodel import CaffeError

CLASSIFIERS = {'alexnet': 'fc8', 'googlenet': 'loss3/classifier'}


@dataclasses.dataclass(frozen=True)
class Imported:
  kind: str     # 'alexnet' | 'googlenet'
  model: dict   # config.model fields, 'name' included
  data: dict    # config.data fields of the input preparation
  params: dict  # this repo's params (numpy)
  sha1: str


def model_fields(kind: str, num_classes: int, aux: bool) -> dict:
  if kind == 'alexnet':
    return {'name': 'alexnet', 'num_classes': num_classes, 'towers': 2,
            'lrn': 'caffe'}
  return {'name': 'googlenet', 'num_classes': num_classes, 'aux_heads': aux}


def data_fields(kind: str) -> dict:
  return {'image_size': bvlc.INPUT_SIZE[kind], 'resize_to': 256,
          'pixel_scale': 255.0, 'pixel_mean': bvlc.MEAN_RGB, 'channels': 3}


def _kind(layers: dict, path) -> str:
  if 'conv1/7x7_s2' in layers:
    return 'googlenet'
  if 'conv1' in layers and 'fc8' in layers:
    return 'alexnet'
  names = ', '.join(list(layers)[:8])
  raise CaffeError(f'{path} is a caffemodel of another network (its layers: '
                   f'{names}, ...): this repo imports BVLC\'s AlexNet '
                   '(bvlc_alexnet.caffemodel, layers conv1..fc8) and GoogLeNet '
                   '(bvlc_googlenet.caffemodel, conv1/7x7_s2 .. '
                   'loss3/classifier).')


def _check_sha1(path: pathlib.Path, kind: str, sha1: str):
  name, published = bvlc.KNOWN[kind]
  if sha1 == published:
    logging.info('%s is the published %s (sha1 %s).', path, name, sha1)
  elif path.name == name:
    logging.warning('%s has sha1 %s, not the published %s of %s: it is '
                    'another version or a damaged copy; importing it anyway.',
                    path, sha1, published, name)


def param_shapes(model) -> dict:
  """The model's params as shapes (nothing computed), at its input size."""
  size = type(model).input_size
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return nn.unbox(variables['params'])


def load(path) -> Imported:
  """Reads a bvlc_alexnet or bvlc_googlenet caffemodel (V1 or V2 encoding);
  CaffeError, one paragraph, for any other file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise CaffeError(f'No file {path}: pass the path of a downloaded '
                     'bvlc_alexnet.caffemodel or bvlc_googlenet.caffemodel '
                     '(README: "ImageNet weights").')
  data = path.read_bytes()
  sha1 = hashlib.sha1(data).hexdigest()
  _, listed = caffemodel.parse(data, str(path))
  layers = {layer.name: layer for layer in listed}
  kind = _kind(layers, path)
  classifier = layers.get(CLASSIFIERS[kind])
  if classifier is None or not classifier.blobs:
    raise CaffeError(f'{path} has no {CLASSIFIERS[kind]} weights: it is not '
                     f'a complete {bvlc.KNOWN[kind][0]}.')
  num_classes = int(classifier.blobs[-1].size)  # the bias: one per class
  aux = kind == 'googlenet' and all(
      f'{loss}/classifier' in layers for loss in bvlc.AUX_LOSSES.values())
  bvlc.check_structure(kind, layers, num_classes)
  fields = model_fields(kind, num_classes, aux)
  model = models.build(fields)
  params = bvlc.to_params(kind, layers, param_shapes(model))
  _check_sha1(path, kind, sha1)
  return Imported(kind, fields, data_fields(kind), params, sha1)


def export(path, kind: str, params: dict, v1: bool = False):
  """Writes params as a caffemodel (V2 `layer` entries, or V1 `layers`):
  the import's inverse."""
  blobs = bvlc.from_params(kind, jax.device_get(params))
  num_classes = blobs[CLASSIFIERS[kind]][1].size
  aux = all(f'{loss}/classifier' in blobs
            for loss in bvlc.AUX_LOSSES.values())
  specs = bvlc.specs(kind, num_classes, aux)
  name = {'alexnet': 'AlexNet', 'googlenet': 'GoogleNet'}[kind]
  pathlib.Path(path).write_bytes(caffemodel.serialize(name, specs, blobs, v1))
