"""BVLC caffemodels (research/caffe): the imported AlexNet and GoogLeNet
compute what OpenCV's independent Caffe importer computes from the same
files, in both encodings; import and export are exact inverses; bad files
get one paragraph."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from research import models
from research.caffe import bvlc
from research.caffe import caffemodel
from research.caffe import imported
from research.data import prepare
from tests import caffe_fixture
from tests.helpers import run_cli

cv2 = pytest.importorskip('cv2')

# Activations compared: OpenCV's blob name, this repo's sown name. OpenCV
# returns a convolution's output before its in-place ReLU.
COMPARED = {
    'alexnet': [('conv1', 'conv1/pre_relu'), ('conv5', 'conv5/pre_relu'),
                ('fc8', 'logits')],
    'googlenet': [('conv1/7x7_s2', 'conv1/pre_relu'),
                  ('inception_4c/output', 'inception_4c/output'),
                  ('loss3/classifier', 'logits')],
}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """{(kind, encoding): (caffemodel, deploy prototxt)}, random weights."""
  root = tmp_path_factory.mktemp('caffe')
  return {(kind, enc): caffe_fixture.write(root, kind, v1=enc == 'v1')[:2]
          for kind in COMPARED for enc in ('v2', 'v1')}


def _ours(path, images):
  net = imported.load(path)
  model = models.build(net.model)
  to_input = prepare.make_prepare(channels=3, scale=net.data['pixel_scale'],
                                  mean=net.data['pixel_mean'])
  logits, state = jax.jit(lambda p, x: model.apply(
      {'params': p}, to_input(x), mutable=['intermediates']))(
          net.params, jnp.asarray(images))
  acts = {'/'.join(k): v[0] for k, v in
          traverse_util.flatten_dict(state['intermediates']).items()}
  return {**acts, 'logits': logits}


@pytest.mark.parametrize('encoding', ['v2', 'v1'])
@pytest.mark.parametrize('kind', sorted(COMPARED))
def test_imported_net_computes_what_opencv_computes(files, kind, encoding):
  model_path, deploy = files[kind, encoding]
  size = bvlc.INPUT_SIZE[kind]
  images = np.random.default_rng(1).integers(0, 256, (4, size, size, 3),
                                             np.uint8)  # RGB
  # OpenCV, as Caffe: BGR in 0..255 minus the mean, NCHW.
  bgr = images[..., ::-1].astype(np.float32) - np.float32(bvlc.MEAN_BGR)
  reference = cv2.dnn.readNetFromCaffe(str(deploy), str(model_path))
  reference.setInput(np.ascontiguousarray(bgr.transpose(0, 3, 1, 2)))
  theirs = reference.forward([name for name, _ in COMPARED[kind]])
  ours = _ours(model_path, images)
  for (name, sown), want in zip(COMPARED[kind], theirs):
    want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
    got = np.asarray(ours[sown])
    assert got.shape == want.shape, name
    scale = np.abs(want).max()
    assert scale > 1.0, name  # a live signal, not all zeros
    assert np.abs(got - want).max() <= 1e-4 * scale, name


@pytest.mark.parametrize('kind', sorted(COMPARED))
def test_import_export_import_is_bit_exact(files, kind, tmp_path):
  original, _ = files[kind, 'v2']
  first = imported.load(original)
  for v1 in (False, True):
    path = tmp_path / f'exported_{v1}.caffemodel'
    imported.export(path, kind, first.params, v1=v1)
    second = imported.load(path)
    a = traverse_util.flatten_dict(first.params, sep='/')
    b = traverse_util.flatten_dict(second.params, sep='/')
    assert a.keys() == b.keys()
    for name in a:
      assert a[name].dtype == b[name].dtype == np.float32
      np.testing.assert_array_equal(a[name], b[name], name)
  # The exported blobs are the file's own, bit for bit.
  _, layers = caffemodel.read(original)
  exported = bvlc.from_params(kind, first.params)
  for layer in layers:
    if layer.blobs:
      for have, back in zip(layer.blobs, exported[layer.name]):
        np.testing.assert_array_equal(have.reshape(back.shape), back)


def test_the_arithmetic_travels_with_the_weights(files):
  alexnet = imported.load(files['alexnet', 'v2'][0])
  assert alexnet.model == {'name': 'alexnet', 'num_classes': 1000,
                           'towers': 2, 'lrn': 'caffe'}
  assert alexnet.data['image_size'] == 227
  assert alexnet.data['pixel_mean'] == (123.0, 117.0, 104.0)  # BGR reversed
  googlenet = imported.load(files['googlenet', 'v1'][0])
  assert googlenet.model['aux_heads'] and googlenet.data['image_size'] == 224
  count = sum(x.size for x in jax.tree.leaves(alexnet.params))
  assert count == 60_965_224  # bvlc_alexnet's
  assert sum(x.size for x in jax.tree.leaves(googlenet.params)) == 13_378_280


def _error(path) -> str:
  with pytest.raises(caffemodel.CaffeError) as e:
    imported.load(path)
  return str(e.value)


def _rewrite(path, kind, out, edit, v1=False):
  """`path`'s layers with `edit(specs, blobs)` applied, written to `out`."""
  _, layers = caffemodel.read(path)
  blobs = {layer.name: layer.blobs for layer in layers if layer.blobs}
  specs = bvlc.specs(kind)
  specs, blobs = edit(specs, blobs)
  out.write_bytes(caffemodel.serialize('edited', specs, blobs, v1=v1))
  return out


def test_bad_files_get_one_paragraph(files, tmp_path):
  alexnet, _ = files['alexnet', 'v2']
  data = alexnet.read_bytes()
  truncated = tmp_path / 'truncated.caffemodel'
  truncated.write_bytes(data[:len(data) // 3])
  assert 'truncated' in _error(truncated)

  # CaffeNet (bvlc_reference_caffenet): AlexNet's layer names and shapes,
  # but it pools before it normalises.
  def caffenet(specs, blobs):
    by_name = {s.name: s for s in specs}
    for n in ('1', '2'):
      norm, pool = by_name[f'norm{n}'], by_name[f'pool{n}']
      conv = norm.bottom
      pool.bottom, norm.bottom = conv, [pool.name]
      following = next(s for s in specs if s.bottom == [pool.name]
                       and s is not norm)
      following.bottom = [norm.name]
    return specs, blobs
  message = _error(_rewrite(alexnet, 'alexnet', tmp_path / 'caffenet.caffemodel',
                            caffenet))
  assert 'CaffeNet' in message and "'norm1'" in message

  # A VGG-style file: other layer names.
  def vgg(specs, blobs):
    for spec in specs:
      if spec.name == 'conv1':
        spec.name = 'conv1_1'
    blobs['conv1_1'] = blobs.pop('conv1')
    return specs, blobs
  message = _error(_rewrite(alexnet, 'alexnet', tmp_path / 'vgg.caffemodel',
                            vgg))
  assert 'another network' in message and 'conv1_1' in message

  # conv2 without its two towers: (256, 96, 5, 5) where (256, 48, 5, 5) fits.
  def ungrouped(specs, blobs):
    blobs['conv2'][0] = np.zeros((256, 96, 5, 5), np.float32)
    return specs, blobs
  message = _error(_rewrite(alexnet, 'alexnet', tmp_path / 'shape.caffemodel',
                            ungrouped, v1=True))
  assert "'conv2'" in message and '(256, 96, 5, 5)' in message
  assert '(256, 48, 5, 5)' in message


def test_a_changed_file_under_a_published_name_warns(files, tmp_path):
  named = tmp_path / 'bvlc_googlenet.caffemodel'
  named.write_bytes(files['googlenet', 'v2'][0].read_bytes())
  proc = run_cli('classify', f'--weights={named}',
                 f'--images={_photo(tmp_path, 224)}',
                 module='research.visualize')
  assert 'not the published 405fc5acd08a3bb12de8ee5e23a96bec22f08204' in (
      proc.stderr)


def _photo(directory: pathlib.Path, size: int, name='photo.png') -> pathlib.Path:
  from PIL import Image
  path = directory / name
  Image.fromarray(np.random.default_rng(size).integers(
      0, 256, (size, size, 3), np.uint8)).save(path)
  return path
