"""SVHN format 1 builder: digitStruct reading, Goodfellow crops, TFDS output.

All offline: the archives are tests/svhn_fixture.py's, and sockets are blocked
while TFDS prepares, so a path that would download fails at once.
"""
import contextlib
import io
import shutil
import socket
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from research.data import svhn_full
from tests import svhn_fixture


def _no_network(*args, **kwargs):
  raise OSError('network access in a test')


@contextlib.contextmanager
def _offline():
  """Any connection attempt raises at once."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(socket, 'create_connection', _no_network)
    mp.setattr(socket.socket, 'connect', _no_network)
    yield


@pytest.fixture
def offline():
  with _offline():
    yield


@pytest.fixture(scope='module')
def archives(tmp_path_factory):
  """(manual_dir, {split: [SvhnImage]})."""
  manual_dir = tmp_path_factory.mktemp('svhn_manual')
  return manual_dir, svhn_fixture.write_svhn_archives(manual_dir)


def _prepare(data_dir, manual_dir):
  builder = tfds.builder('svhn_full', data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return builder


@pytest.fixture(scope='module')
def prepared(archives, tmp_path_factory):
  """{split: [example]} as stored by TFDS, prepared once with no network."""
  with _offline():
    builder = _prepare(tmp_path_factory.mktemp('svhn_tfds'), archives[0])
  return {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
          for split in svhn_full.SPLITS}


# ------------------------------------------------------------ crop_box by hand


def test_crop_box_two_digits_expands_union_30_percent():
  # Union x 10..35, y 5..27: 25 x 22, centre (22.5, 16). Times 1.3: 32.5 x
  # 28.6, so x 6.25..38.75, y 1.7..30.3; outward: (6, 1, 39, 31).
  box = svhn_full.crop_box(left=[10, 25], top=[5, 7], width=[10, 10],
                           height=[20, 20], image_width=100, image_height=50)
  assert box == (6, 1, 39, 31)


def test_crop_box_clipped_by_image_border():
  # 20 x 30 at (2, 3), centre (12, 18). Times 1.3: 26 x 39, so x -1..25,
  # y -1.5..37.5; outward and clipped to 30 x 35: (0, 0, 25, 35).
  box = svhn_full.crop_box([2], [3], [20], [30], image_width=30,
                           image_height=35)
  assert box == (0, 0, 25, 35)


def test_crop_box_float_error_does_not_add_a_pixel():
  # x 5.7..23.7: centre 14.7, 1.3 * 18 / 2 = 11.7, so x 3..26.4; in floats
  # 14.7 - 11.7 = 2.9999999999999982, which must not floor to 2. y 10..30:
  # centre 20, 1.3 * 20 / 2 = 13, so y 7..33.
  box = svhn_full.crop_box([5.7], [10], [18], [20], 100, 100)
  assert box == (3, 7, 27, 33)
  assert svhn_full.crop_box([20], [10], [10], [20], 100, 100,
                            expand=0.0) == (20, 10, 30, 30)


def test_encode_digits_maps_10_to_0_and_pads():
  length, digits = svhn_full.encode_digits([1.0, 10.0, 3.0])
  assert length == 3 and digits.dtype == np.int32
  assert digits.tolist() == [1, 0, 3, -1, -1]
  length, digits = svhn_full.encode_digits([2, 3, 10, 4, 7, 1])
  assert length == 6 and digits.tolist() == [2, 3, 0, 4, 7]


def test_preprocess_takes_left_top_right_bottom():
  image = np.zeros((40, 60, 3), np.uint8)
  image[5:25, 10:30] = (200, 100, 50)  # rows are y, columns x
  out = svhn_full.preprocess(image, (10, 5, 30, 25))
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  assert (out == (200, 100, 50)).all()


# ------------------------------------------------------------ digitStruct.mat


def _mat(manual_dir, split) -> bytes:
  with tarfile.open(manual_dir / f'{split}.tar.gz') as tar:
    return tar.extractfile(f'{split}/digitStruct.mat').read()


@pytest.mark.parametrize('split', svhn_full.SPLITS)
def test_read_digit_struct_returns_what_was_written(archives, split):
  manual_dir, images = archives
  read = svhn_full.read_digit_struct(io.BytesIO(_mat(manual_dir, split)))
  assert [name for name, _ in read] == [image.name for image in images[split]]
  for (_, fields), image in zip(read, images[split]):
    for key in ('left', 'top', 'width', 'height', 'label'):
      assert fields[key].tolist() == list(getattr(image, key)), key


def test_fixture_has_inline_and_reference_cases(archives):
  lengths = {len(image.label) for split in archives[1].values()
             for image in split}
  assert {1, 6} <= lengths and len(lengths) >= 4


# ------------------------------------------------------------ the TFDS builder


def _expected(image: svhn_fixture.SvhnImage) -> dict:
  height, width = image.pixels.shape[:2]
  box = svhn_full.crop_box(image.left, image.top, image.width, image.height,
                           width, height)
  digits = [int(v) % 10 for v in image.label[:5]]
  return {'image': svhn_full.preprocess(image.pixels, box),
          'length': len(image.label),
          'digits': digits + [-1] * (5 - len(digits)),
          'box': list(box)}


def test_builder_counts_per_split(prepared, archives):
  assert {s: len(v) for s, v in prepared.items()} == {
      s: len(v) for s, v in archives[1].items()}


@pytest.mark.parametrize('split', svhn_full.SPLITS)
def test_builder_examples_match_fixture(prepared, archives, split):
  expected = {image.name: _expected(image) for image in archives[1][split]}
  found = set()
  for example in prepared[split]:
    # Stored order is TFDS's, so each example is identified by its pixels.
    names = [n for n, e in expected.items()
             if np.array_equal(e['image'], example['image'])]
    assert len(names) == 1, 'image matches no (or several) fixture crops'
    want = expected[names[0]]
    found.add(names[0])
    assert example['image'].dtype == np.uint8
    assert example['length'] == want['length']
    assert example['digits'].tolist() == want['digits']
    assert example['box'].dtype == np.float32
    assert example['box'].tolist() == want['box']
  assert found == set(expected)


def test_builder_stores_long_numbers_and_zero_digits(prepared):
  train = {int(e['length']): e['digits'].tolist() for e in prepared['train']}
  assert train[6] == [2, 3, 0, 4, 7]
  assert train[1] == [5, -1, -1, -1, -1]


def test_partial_manual_dir_fails_fast(archives, tmp_path, offline):
  manual_dir = tmp_path / 'manual'
  manual_dir.mkdir()
  shutil.copy(archives[0] / 'train.tar.gz', manual_dir)
  with pytest.raises(FileNotFoundError, match='test.tar.gz, extra.tar.gz'):
    _prepare(tmp_path / 'tfds', manual_dir)


def test_no_manual_files_and_no_network_fails_fast(tmp_path, offline):
  with pytest.raises(ConnectionError, match='manual_dir'):
    _prepare(tmp_path / 'tfds', tmp_path / 'absent')


def test_run_without_manual_dir_offline_names_the_flag(tmp_path, offline):
  """Through the loader a run uses: the flag to set, at once."""
  import ml_collections
  from research.data import tfds_source
  config = ml_collections.ConfigDict({'name': 'svhn_full',
                                      'data_dir': str(tmp_path),
                                      'manual_dir': None})
  with pytest.raises(tfds_source.DataError,
                     match='--config.data.manual_dir.*train.tar.gz'):
    tfds_source.prepared_builder(config)
  config.manual_dir = str(tmp_path / 'empty')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(tfds_source.DataError, match='lacks train.tar.gz'):
    tfds_source.prepared_builder(config)
