"""A .caffemodel as named layers of numpy blobs, read and written with the
protobuf runtime alone (research/caffe/proto.py holds the schema).

A caffemodel is a serialized NetParameter: the trained net's layers with
their parameters (kernel sizes, strides, groups) and blobs (weights, then
biases). Files from before 2015 hold V1 `layers` (enum types); later ones V2
`layer`. A blob's shape is its `shape.dim`, or in old files the legacy
(num, channels, height, width), where a fully connected weight is
(1, 1, out, in) and a bias (1, 1, 1, out).
"""
import dataclasses

import numpy as np
from google.protobuf import message as protobuf_message

from research import errors
from research.caffe import proto

_V1_NAMES = {v: k for k, v in proto.V1_TYPES.items()}


class CaffeError(errors.UserError, ValueError):
  """A file that is not the caffemodel asked for; the message says why."""


@dataclasses.dataclass
class Layer:
  name: str
  type: str              # V2 type name: 'Convolution', 'InnerProduct', ...
  bottom: list
  top: list
  blobs: list            # float32 arrays, in the file's shapes
  param: object = None   # the layer's protobuf message (its *_param fields)


def _blob(message, layer: str, index: int) -> np.ndarray:
  if message.HasField('shape'):
    shape = tuple(message.shape.dim)
  else:  # legacy 4-D
    shape = (message.num, message.channels, message.height, message.width)
  raw = b''.join(message.data)
  values = (np.frombuffer(raw, '<f4') if raw else
            np.frombuffer(b''.join(message.double_data), '<f8')
            .astype(np.float32))
  if values.size != int(np.prod(shape)):
    raise CaffeError(f'Layer {layer!r} blob {index} holds {values.size} '
                     f'values for its shape {shape}: the file is truncated '
                     'or corrupt. Download it again.')
  return values.reshape(shape)


def parse(data: bytes, path: str = 'the file') -> tuple[str, list[Layer]]:
  """(net name, layers in file order) of a serialized NetParameter."""
  net = proto.NetParameter()
  try:
    net.ParseFromString(data)
  except protobuf_message.DecodeError as e:
    raise CaffeError(f'{path} is not a readable caffemodel ({e}): it is '
                     'truncated, corrupt or another kind of file. Download '
                     'it again (README: "ImageNet weights").') from e
  layers = []
  for message in net.layer:
    layers.append(Layer(message.name, message.type, list(message.bottom),
                        list(message.top),
                        [_blob(b, message.name, i)
                         for i, b in enumerate(message.blobs)], message))
  for message in net.layers:  # V1
    layers.append(Layer(message.name, _V1_NAMES.get(message.type,
                                                    f'V1:{message.type}'),
                        list(message.bottom), list(message.top),
                        [_blob(b, message.name, i)
                         for i, b in enumerate(message.blobs)], message))
  if not layers:
    raise CaffeError(f'{path} holds no layers: it is not a caffemodel (or it '
                     'is empty). Download it again.')
  return net.name, layers


def read(path) -> tuple[str, list[Layer]]:
  with open(path, 'rb') as f:
    return parse(f.read(), str(path))


@dataclasses.dataclass
class LayerSpec:
  """One layer of a net as Caffe describes it: the fields of its *_param
  message (e.g. {'convolution_param': {'num_output': 96, ...}})."""
  name: str
  type: str
  bottom: list
  top: list
  params: dict = dataclasses.field(default_factory=dict)


def fill(message, fields: dict):
  """Sets a protobuf message's fields from nested dicts and lists."""
  for key, value in fields.items():
    if isinstance(value, dict):
      fill(getattr(message, key), value)
    elif isinstance(value, (list, tuple)):
      getattr(message, key).extend(value)
    else:
      setattr(message, key, value)


def _add_blob(message, array: np.ndarray, legacy: bool):
  array = np.ascontiguousarray(array, '<f4')
  if legacy:
    shape = (1,) * (4 - array.ndim) + array.shape
    message.num, message.channels, message.height, message.width = shape
  else:
    message.shape.dim.extend(array.shape)
  message.data.append(array.tobytes())


def serialize(name: str, specs: list, blobs: dict, v1: bool = False) -> bytes:
  """A NetParameter of `specs` with `blobs` ({layer: [arrays]}), as V2
  `layer` entries, or with v1=True as V1 `layers` with legacy 4-D blob
  shapes, the two encodings BVLC's files come in."""
  net = proto.NetParameter(name=name)
  for spec in specs:
    if v1:
      message = net.layers.add(name=spec.name, type=proto.V1_TYPES[spec.type])
    else:
      message = net.layer.add(name=spec.name, type=spec.type)
    message.bottom.extend(spec.bottom)
    message.top.extend(spec.top)
    fill(message, spec.params)
    for array in blobs.get(spec.name, ()):
      _add_blob(message.blobs.add(), array, legacy=v1)
  return net.SerializeToString()


def deploy_prototxt(name: str, specs: list, input_shape: tuple) -> str:
  """The text-format net definition Caffe and OpenCV load beside a
  caffemodel: an input of `input_shape` (N, C, H, W), then `specs`."""
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  net = proto.NetParameter(name=name)
  net.input.append('data')
  net.input_shape.add().dim.extend(input_shape)
  for spec in specs:
    message = net.layer.add(name=spec.name, type=spec.type)
    message.bottom.extend(spec.bottom)
    message.top.extend(spec.top)
    fill(message, spec.params)
  return text_format.MessageToString(net)
