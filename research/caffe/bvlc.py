"""The BVLC model zoo's ImageNet AlexNet and GoogLeNet, layer by layer, and
their weights to and from this repo's params.

`specs(kind)` describes each net as Caffe does (BVLC's layer names, kernels,
strides, pads, pooling, LRN and groups); `to_params` checks a caffemodel's
layers against it and turns its blobs into the params of
research/models/alexnet.py or googlenet.py, `from_params` goes back. Layout
facts (papers.md, "The BVLC Caffe model zoo"):

- Caffe kernels are (out, in, h, w); flax's are (h, w, in, out).
- `group: 2` splits a layer's inputs and outputs in halves, the first half of
  the outputs reading the first half of the inputs: AlexNet's towers
  (research/models/towers.py keeps them as a leading towers axis).
- InnerProduct weights are (out, in) over the pooled maps flattened in
  (channels, height, width) order (fc6, the auxiliary heads' fc); flax
  flattens (height, width, channels).
- The nets read BGR. The first convolution's input channels are reversed
  here, so the imported net reads RGB like every other model in this repo;
  the mean (104, 117, 123) BGR becomes (123, 117, 104) RGB.
"""
import numpy as np

from research.caffe import proto
from research.caffe.caffemodel import CaffeError, LayerSpec, fill
from research.models.googlenet import INCEPTION

# Published files (BVLC caffe, models/bvlc_*/readme.md).
KNOWN = {
    'alexnet': ('bvlc_alexnet.caffemodel',
                '9116a64c0fbe4459d18f4bb6b56d647b63920377'),
    'googlenet': ('bvlc_googlenet.caffemodel',
                  '405fc5acd08a3bb12de8ee5e23a96bec22f08204'),
}
INPUT_SIZE = {'alexnet': 227, 'googlenet': 224}
MEAN_BGR = (104.0, 117.0, 123.0)
MEAN_RGB = MEAN_BGR[::-1]

# ---------------------------------------------------------------- the nets


def _conv(name, bottom, out, kernel, stride=1, pad=0, group=1):
  params = {'num_output': out, 'kernel_size': [kernel]}
  if stride != 1:
    params['stride'] = [stride]
  if pad:
    params['pad'] = [pad]
  if group != 1:
    params['group'] = group
  return LayerSpec(name, 'Convolution', [bottom], [name],
                   {'convolution_param': params})


def _relu(name, blob):
  return LayerSpec(name, 'ReLU', [blob], [blob])


def _pool(name, bottom, method, kernel, stride, pad=0):
  params = {'pool': method, 'kernel_size': kernel, 'stride': stride}
  if pad:
    params['pad'] = pad
  return LayerSpec(name, 'Pooling', [bottom], [name],
                   {'pooling_param': params})


def _lrn(name, bottom):
  return LayerSpec(name, 'LRN', [bottom], [name], {'lrn_param': {
      'local_size': 5, 'alpha': 1e-4, 'beta': 0.75}})


def _fc(name, bottom, out):
  return LayerSpec(name, 'InnerProduct', [bottom], [name],
                   {'inner_product_param': {'num_output': out}})


def _dropout(name, blob, ratio):
  return LayerSpec(name, 'Dropout', [blob], [blob],
                   {'dropout_param': {'dropout_ratio': ratio}})


def alexnet_specs(num_classes: int = 1000) -> list:
  """bvlc_alexnet: LRN after the ReLU and before the pool, as the paper."""
  out = []
  def conv(name, bottom, *args, **kwargs):
    out.extend([_conv(name, bottom, *args, **kwargs),
                _relu(f'relu{name[-1]}', name)])
  conv('conv1', 'data', 96, 11, stride=4)
  out += [_lrn('norm1', 'conv1'), _pool('pool1', 'norm1', 'MAX', 3, 2)]
  conv('conv2', 'pool1', 256, 5, pad=2, group=2)
  out += [_lrn('norm2', 'conv2'), _pool('pool2', 'norm2', 'MAX', 3, 2)]
  conv('conv3', 'pool2', 384, 3, pad=1)
  conv('conv4', 'conv3', 384, 3, pad=1, group=2)
  conv('conv5', 'conv4', 256, 3, pad=1, group=2)
  out.append(_pool('pool5', 'conv5', 'MAX', 3, 2))
  bottom = 'pool5'
  for i in (6, 7):
    out += [_fc(f'fc{i}', bottom, 4096), _relu(f'relu{i}', f'fc{i}'),
            _dropout(f'drop{i}', f'fc{i}', 0.5)]
    bottom = f'fc{i}'
  return out + [_fc('fc8', 'fc7', num_classes)]


def _inception(name, bottom) -> list:
  n1, r3, n3, r5, n5, proj = INCEPTION[name]
  p = f'inception_{name}'
  out = []
  def conv(branch, source, *args, **kwargs):
    out.extend([_conv(f'{p}/{branch}', source, *args, **kwargs),
                _relu(f'{p}/relu_{branch}', f'{p}/{branch}')])
  conv('1x1', bottom, n1, 1)
  conv('3x3_reduce', bottom, r3, 1)
  conv('3x3', f'{p}/3x3_reduce', n3, 3, pad=1)
  conv('5x5_reduce', bottom, r5, 1)
  conv('5x5', f'{p}/5x5_reduce', n5, 5, pad=2)
  out.append(_pool(f'{p}/pool', bottom, 'MAX', 3, 1, pad=1))
  conv('pool_proj', f'{p}/pool', proj, 1)
  out.append(LayerSpec(f'{p}/output', 'Concat',
                       [f'{p}/1x1', f'{p}/3x3', f'{p}/5x5', f'{p}/pool_proj'],
                       [f'{p}/output']))
  return out


AUX_LOSSES = {'4a': 'loss1', '4d': 'loss2'}  # Caffe's names of the aux heads


def _aux(name, bottom, num_classes) -> list:
  loss = AUX_LOSSES[name]
  return [_pool(f'{loss}/ave_pool', bottom, 'AVE', 5, 3),
          _conv(f'{loss}/conv', f'{loss}/ave_pool', 128, 1),
          _relu(f'{loss}/relu_conv', f'{loss}/conv'),
          _fc(f'{loss}/fc', f'{loss}/conv', 1024),
          _relu(f'{loss}/relu_fc', f'{loss}/fc'),
          _dropout(f'{loss}/drop_fc', f'{loss}/fc', 0.7),
          _fc(f'{loss}/classifier', f'{loss}/fc', num_classes)]


def googlenet_specs(num_classes: int = 1000, aux: bool = True) -> list:
  """bvlc_googlenet (Table 1); `aux` adds the auxiliary heads, which the
  caffemodel holds and a deploy net leaves out."""
  out = [_conv('conv1/7x7_s2', 'data', 64, 7, stride=2, pad=3),
         _relu('conv1/relu_7x7', 'conv1/7x7_s2'),
         _pool('pool1/3x3_s2', 'conv1/7x7_s2', 'MAX', 3, 2),
         _lrn('pool1/norm1', 'pool1/3x3_s2'),
         _conv('conv2/3x3_reduce', 'pool1/norm1', 64, 1),
         _relu('conv2/relu_3x3_reduce', 'conv2/3x3_reduce'),
         _conv('conv2/3x3', 'conv2/3x3_reduce', 192, 3, pad=1),
         _relu('conv2/relu_3x3', 'conv2/3x3'),
         _lrn('conv2/norm2', 'conv2/3x3'),
         _pool('pool2/3x3_s2', 'conv2/norm2', 'MAX', 3, 2)]
  bottom = 'pool2/3x3_s2'
  for name in INCEPTION:
    if name in ('4a', '5a'):
      pool = {'4a': 'pool3/3x3_s2', '5a': 'pool4/3x3_s2'}[name]
      out.append(_pool(pool, bottom, 'MAX', 3, 2))
      bottom = pool
    out += _inception(name, bottom)
    bottom = f'inception_{name}/output'
    if aux and name in AUX_LOSSES:
      out += _aux(name, bottom, num_classes)
  return out + [_pool('pool5/7x7_s1', bottom, 'AVE', 7, 1),
                _dropout('pool5/drop_7x7_s1', 'pool5/7x7_s1', 0.4),
                _fc('loss3/classifier', 'pool5/7x7_s1', num_classes)]


def specs(kind: str, num_classes: int = 1000, aux: bool = True) -> list:
  if kind == 'alexnet':
    return alexnet_specs(num_classes)
  return googlenet_specs(num_classes, aux)


# ---------------------------------------------------- blobs <-> params
# Each layer with weights: (caffe name, param path, how its blobs map).
# ('conv', bgr) kernels, ('towers', g) grouped kernels, ('fc', chw) dense
# kernels over flattened maps of shape chw (None: a vector input).


def _param_layers(kind: str) -> list:
  if kind == 'alexnet':
    return [('conv1', ('conv1', 'conv'), ('conv', True)),
            ('conv2', ('conv2', 'towers'), ('towers', 2)),
            ('conv3', ('conv3', 'conv'), ('conv', False)),
            ('conv4', ('conv4', 'towers'), ('towers', 2)),
            ('conv5', ('conv5', 'towers'), ('towers', 2)),
            ('fc6', ('fc6', 'dense'), ('fc', (256, 6, 6))),
            ('fc7', ('fc7', 'dense'), ('fc', None)),
            ('fc8', ('fc8',), ('fc', None))]
  out = [('conv1/7x7_s2', ('conv1', 'conv'), ('conv', True)),
         ('conv2/3x3_reduce', ('conv2_reduce', 'conv'), ('conv', False)),
         ('conv2/3x3', ('conv2', 'conv'), ('conv', False))]
  for name in INCEPTION:
    for branch in ('1x1', '3x3_reduce', '3x3', '5x5_reduce', '5x5',
                   'pool_proj'):
      out.append((f'inception_{name}/{branch}',
                  (f'inception_{name}', branch, 'conv'), ('conv', False)))
  for name, loss in AUX_LOSSES.items():
    out += [(f'{loss}/conv', (f'aux_{name}', 'conv', 'conv'), ('conv', False)),
            (f'{loss}/fc', (f'aux_{name}', 'fc', 'dense'),
             ('fc', (128, 4, 4))),
            (f'{loss}/classifier', (f'aux_{name}', 'classifier'),
             ('fc', None))]
  return out + [('loss3/classifier', ('classifier',), ('fc', None))]


def _to_flax(weights: np.ndarray, how) -> np.ndarray:
  kind, arg = how
  if kind == 'conv':
    kernel = weights.transpose(2, 3, 1, 0)
    return kernel[:, :, ::-1] if arg else kernel  # BGR -> RGB inputs
  if kind == 'towers':
    out, cin, kh, kw = weights.shape
    return weights.reshape(arg, out // arg, cin, kh, kw).transpose(0, 3, 4, 2, 1)
  if arg is not None:  # (out, C*H*W) in C, H, W order -> (H*W*C, out)
    c, h, w = arg
    return weights.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(
        c * h * w, -1)
  return weights.T


def _from_flax(kernel: np.ndarray, how) -> np.ndarray:
  kind, arg = how
  if kind == 'conv':
    return (kernel[:, :, ::-1] if arg else kernel).transpose(3, 2, 0, 1)
  if kind == 'towers':
    towers, kh, kw, cin, out = kernel.shape
    return kernel.transpose(0, 4, 3, 1, 2).reshape(towers * out, cin, kh, kw)
  if arg is not None:
    c, h, w = arg
    return kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1,
                                                                     c * h * w)
  return kernel.T


def _caffe_shape(kernel_shape: tuple, how) -> tuple:
  return _from_flax(np.empty(kernel_shape, np.float32), how).shape


def _get(tree: dict, path: tuple):
  for key in path:
    tree = tree[key]
  return tree


def _put(tree: dict, path: tuple, leaf: dict):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = leaf


def _fit(blob: np.ndarray, shape: tuple, layer: str, what: str) -> np.ndarray:
  """`blob` as `shape`; a legacy 4-D blob may carry leading 1s."""
  if blob.shape == tuple(shape):
    return blob
  if (blob.size == int(np.prod(shape)) and len(blob.shape) >= len(shape)
      and blob.shape[-len(shape):] == tuple(shape)
      and all(d == 1 for d in blob.shape[:-len(shape)])):
    return blob.reshape(shape)
  raise CaffeError(f'Layer {layer!r}: the file\'s {what} has shape '
                   f'{blob.shape}, the model needs {tuple(shape)}. This is '
                   'not the network the file was trained as (or the wrong '
                   'num_classes).')


def from_params(kind: str, params: dict) -> dict:
  """{caffe layer: [weights, bias]} of this repo's params (float32 numpy),
  in Caffe's layouts; layers the params lack (no aux heads) are left out."""
  out = {}
  for name, path, how in _param_layers(kind):
    try:
      leaf = _get(params, path)
    except KeyError:
      continue
    kernel, bias = np.asarray(leaf['kernel']), np.asarray(leaf['bias'])
    out[name] = [_from_flax(kernel, how), bias.reshape(-1)]
  return out


def to_params(kind: str, layers: dict, like: dict) -> dict:
  """This repo's params from {caffe layer: Layer}, shaped as `like` (the
  model's params or their shapes); raises CaffeError naming the layer and
  both shapes where they differ, or the first missing layer."""
  params = {}
  for name, path, how in _param_layers(kind):
    try:
      want = _get(like, path)
    except KeyError:
      continue  # e.g. a model without aux heads
    if name not in layers:
      raise CaffeError(f'The file has no layer {name!r}, which '
                       f'{KNOWN[kind][0]} has: it holds another network '
                       f'(its layers: {", ".join(list(layers)[:8])}, ...).')
    blobs = layers[name].blobs
    if len(blobs) != 2:
      raise CaffeError(f'Layer {name!r} holds {len(blobs)} blobs; '
                       f'{KNOWN[kind][0]}\'s hold weights and biases.')
    kernel_shape, bias_shape = want['kernel'].shape, want['bias'].shape
    weights = _fit(blobs[0], _caffe_shape(kernel_shape, how), name, 'weights')
    bias = _fit(blobs[1], (int(np.prod(bias_shape)),), name, 'bias')
    _put(params, path, {'kernel': np.ascontiguousarray(_to_flax(weights, how)),
                        'bias': bias.reshape(bias_shape)})
  return params


# What each layer type computes with: checked against the file, defaults
# included (an LRN with k = 2 is the paper's, not Caffe's).
_CHECKED = {
    'Convolution': ('convolution_param',
                    ('num_output', 'kernel_size', 'stride', 'pad', 'group')),
    'Pooling': ('pooling_param', ('pool', 'kernel_size', 'stride', 'pad')),
    'LRN': ('lrn_param', ('local_size', 'alpha', 'beta', 'k', 'norm_region')),
    'InnerProduct': ('inner_product_param', ()),
}


def _values(message, fields) -> dict:
  out = {}
  for field in fields:
    value = getattr(message, field)
    if not isinstance(value, (int, float)):
      value = list(value) or None  # repeated: kernel_size [11]
    elif isinstance(value, float):
      value = float(np.float32(value))
    out[field] = value
  return out


def check_structure(kind: str, layers: dict, num_classes: int):
  """Refuses a file whose layers are wired or parametrised otherwise than
  `kind`'s: another network under the same layer names (CaffeNet, i.e.
  bvlc_reference_caffenet, pools before it normalises), a missing pooling or
  normalisation layer, another stride, pad or LRN constant."""
  file_name = KNOWN[kind][0]
  for spec in specs(kind, num_classes):
    if spec.type not in _CHECKED:
      continue
    layer = layers.get(spec.name)
    if layer is None:
      raise CaffeError(f'The file has no layer {spec.name!r}, which '
                       f'{file_name} has: it holds another network (its '
                       f'layers: {", ".join(list(layers)[:8])}, ...).')
    if layer.type != spec.type:
      raise CaffeError(f'Layer {spec.name!r} is a {layer.type} layer in the '
                       f'file, a {spec.type} layer in {file_name}: the file '
                       'holds another network.')
    if list(layer.bottom) != spec.bottom:
      raise CaffeError(
          f'Layer {spec.name!r} reads {", ".join(layer.bottom)} in the file '
          f'but {", ".join(spec.bottom)} in {file_name}: the file holds '
          'another network under the same layer names (CaffeNet, '
          'bvlc_reference_caffenet, pools before it normalises).')
    field, names = _CHECKED[spec.type]
    want = proto.LayerParameter()
    fill(want, spec.params)
    expected = _values(getattr(want, field), names)
    got = _values(getattr(layer.param, field), names)
    if layer.param.HasField(field) and got != expected:
      diff = {k: (got[k], expected[k]) for k in names if got[k] != expected[k]}
      raise CaffeError(
          f'Layer {spec.name!r} computes otherwise in the file than in '
          f'{file_name} (file, expected: {diff}): the file holds another '
          'network.')
