"""Caffemodels of random weights in BVLC's layouts, written in the real wire
format, and the deploy .prototxt that OpenCV loads beside them.

The blob shapes come from a shape inference of their own over the layer
specs (Caffe's rules: convolutions round down, pools round up), not from the
importer's mapping, so the importer is checked against Caffe's layout and not
against itself.
"""
import math

import numpy as np

from research.caffe import bvlc
from research.caffe import caffemodel


def _pool_size(size, kernel, stride, pad):
  return int(math.ceil((size + 2 * pad - kernel) / stride)) + 1


def blob_shapes(specs, input_chw) -> dict:
  """{layer: [weight shape, bias shape]} of every layer with weights."""
  shapes, out = {'data': tuple(input_chw)}, {}
  for spec in specs:
    c, h, w = shapes[spec.bottom[0]]
    if spec.type == 'Convolution':
      p = spec.params['convolution_param']
      k, s = p['kernel_size'][0], (p.get('stride') or [1])[0]
      pad, group = (p.get('pad') or [0])[0], p.get('group', 1)
      n = p['num_output']
      out[spec.name] = [(n, c // group, k, k), (n,)]
      size = lambda x: (x + 2 * pad - k) // s + 1
      shapes[spec.top[0]] = (n, size(h), size(w))
    elif spec.type == 'Pooling':
      p = spec.params['pooling_param']
      size = lambda x: _pool_size(x, p['kernel_size'], p['stride'],
                                  p.get('pad', 0))
      shapes[spec.top[0]] = (c, size(h), size(w))
    elif spec.type == 'InnerProduct':
      n = spec.params['inner_product_param']['num_output']
      out[spec.name] = [(n, c * h * w), (n,)]
      shapes[spec.top[0]] = (n, 1, 1)
    elif spec.type == 'Concat':
      shapes[spec.top[0]] = (sum(shapes[b][0] for b in spec.bottom), h, w)
    else:  # ReLU, LRN, Dropout keep the shape
      shapes[spec.top[0]] = (c, h, w)
  return out


def random_blobs(kind: str, seed: int = 0, num_classes: int = 1000,
                 pixel_std: float = 1.0) -> dict:
  """He-scaled random weights and small random biases, in Caffe's shapes;
  the first layer's divided by `pixel_std`, the spread of its inputs (about
  70 for photos in 0..255 minus the mean), for activations of order 1."""
  rng = np.random.default_rng(seed)
  size = bvlc.INPUT_SIZE[kind]
  blobs = {}
  for i, (name, (w, b)) in enumerate(blob_shapes(
      bvlc.specs(kind, num_classes), (3, size, size)).items()):
    std = math.sqrt(2 / int(np.prod(w[1:]))) / (pixel_std if i == 0 else 1)
    blobs[name] = [rng.normal(0, std, w).astype(np.float32),
                   rng.normal(0, 0.1, b).astype(np.float32)]
  return blobs


def write(directory, kind: str, v1: bool = False, seed: int = 0,
          num_classes: int = 1000, pixel_std: float = 1.0):
  """(caffemodel path, deploy prototxt path, blobs) in `directory`."""
  blobs = random_blobs(kind, seed, num_classes, pixel_std)
  model = directory / f'{kind}_{"v1" if v1 else "v2"}_{seed}.caffemodel'
  model.write_bytes(caffemodel.serialize(
      kind, bvlc.specs(kind, num_classes), blobs, v1=v1))
  size = bvlc.INPUT_SIZE[kind]
  deploy = directory / f'{kind}_deploy.prototxt'
  deploy.write_text(caffemodel.deploy_prototxt(
      kind, bvlc.specs(kind, num_classes, aux=False), (1, 3, size, size)))
  return model, deploy, blobs


def calibrate(kind: str, blobs: dict, model, deploy, images_bgr,
              num_classes: int = 1000) -> None:
  """Rescales each weighted layer of the deploy net (weights and bias
  together) so that its output has unit spread on `images_bgr` (N, 3, H, W,
  BGR minus the mean), layer by layer in order, as a data-dependent
  initialisation does (Mishkin & Matas 2016, LSUV, without the orthogonal
  start), and rewrites `model` with `blobs` so changed. Random weights then
  pass activations of order 1 to a new classifier, as trained ones do, so
  fine-tuning from them can learn. The forward passes are OpenCV's, not the
  importer's."""
  import cv2
  net = cv2.dnn.readNetFromCaffe(str(deploy), str(model))
  net.setInput(np.ascontiguousarray(images_bgr, np.float32))
  for name in blob_shapes(bvlc.specs(kind, num_classes, aux=False),
                          images_bgr.shape[1:]):
    layer = net.getLayerId(name)
    spread = float(net.forward(name).std())
    blobs[name] = [(blob / spread).astype(np.float32) for blob in blobs[name]]
    for i, blob in enumerate(blobs[name]):
      net.setParam(layer, i, blob.reshape(net.getParam(layer, i).shape))
  model.write_bytes(caffemodel.serialize(kind, bvlc.specs(kind, num_classes),
                                         blobs))
