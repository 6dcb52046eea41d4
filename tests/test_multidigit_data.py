"""Numbers composed from MNIST (research/data/multidigit.py) through TFDS, and
the in-memory random-crop pipeline the street-number configs use."""
import ml_collections
import numpy as np
import pytest

from research.data import idx
from research.data import multidigit
from research.data import pipeline
from research.data import tfds_source
from tests.helpers import MNIST_FILES


def _splits(data_dir, specs):
  return tfds_source.load_splits(ml_collections.ConfigDict({
      'name': 'mnist_multidigit/small', 'data_dir': data_dir,
      'manual_dir': None, 'restore_file_order': False}), specs)


def test_labels_are_length_then_digits(multidigit_data_dir):
  split = _splits(multidigit_data_dir, {'train': 'train'})['train']
  images, labels = split['image'], split['label']
  assert images.shape == (2000, 64, 64, 3) and images.dtype == np.uint8
  assert labels.shape == (2000, 6) and labels.dtype == np.int32
  length, digits = labels[:, 0], labels[:, 1:]
  assert set(np.unique(length)) == {1, 2, 3, 4, 5}
  np.testing.assert_array_equal((digits >= 0).sum(1), length)
  # Present digits come first, then -1 padding.
  assert np.all(np.diff((digits >= 0).astype(int), axis=1) <= 0)
  assert digits.max() == 9 and set(np.unique(digits[digits >= 0])) == set(
      range(10))
  # Colours vary: not a grey dataset in disguise.
  assert np.abs(images[..., 0].astype(int) - images[..., 2]).mean() > 10


def test_example_is_a_function_of_split_and_index(multidigit_data_dir):
  """A stored example equals one recomputed from the MNIST file, so the set is
  reproducible anywhere the four MNIST files are (TFDS does not return
  keys, so examples are matched by their pixels)."""
  prefix, (lo, hi), _ = multidigit.SPLITS['test']
  read = lambda kind: idx.read_idx(
      str(MNIST_FILES / f'{prefix}-{kind}-ubyte.gz'))[lo:hi]
  images, labels = read('images-idx3'), read('labels-idx1')
  seed = multidigit.SPLIT_SEEDS['test']
  want = [multidigit.example(images, labels.astype(np.int32),
                             np.random.default_rng([seed, i]))
          for i in range(5)]
  test = _splits(multidigit_data_dir, {'test': 'test'})['test']
  for ex in want:
    hits = np.all(test['image'] == ex['image'], axis=(1, 2, 3))
    assert hits.sum() == 1
    np.testing.assert_array_equal(test['label'][hits][0, 1:], ex['digits'])


def test_splits_draw_on_disjoint_mnist_digits():
  ranges = [(prefix, lo, hi) for prefix, (lo, hi), _ in
            multidigit.SPLITS.values()]
  train = [r for r in ranges if r[0] == 'train']
  assert len(train) == 2 and train[0][2] <= train[1][1]


def test_random_crops_follow_seed_and_step():
  images = np.arange(4 * 8 * 8, dtype=np.int32).reshape(4, 8, 8, 1)
  arrays = {'image': images, 'label': np.arange(4, dtype=np.int32)}
  batches = pipeline.TrainBatches(arrays, batch_size=2, seed=0, crop=5)
  a, b = batches.chunk(0, 3), batches.chunk(0, 3)
  np.testing.assert_array_equal(a['image'], b['image'])
  assert a['image'].shape == (3, 2, 5, 5, 1)
  for step in range(3):
    for row in range(2):
      crop = a['image'][step, row, ..., 0]
      full = images[a['label'][step, row], ..., 0]
      top, left = np.argwhere(full == crop[0, 0])[0]
      np.testing.assert_array_equal(full[top:top + 5, left:left + 5], crop)
  offsets = {tuple(np.argwhere(images[l, ..., 0] == c[0, 0, 0])[0])
             for step in range(3) for l, c in zip(a['label'][step],
                                                  a['image'][step])}
  assert len(offsets) > 1
  # Two hosts' rows are the two halves of the one-host batch.
  halves = [pipeline.TrainBatches(arrays, 2, 0, p, 2, crop=5).chunk(0, 3)
            for p in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([h['image'] for h in halves], axis=1), a['image'])


def test_eval_takes_the_centre_crop_and_a_too_big_crop_is_refused():
  images = np.arange(2 * 64 * 64 * 3, dtype=np.int32).reshape(2, 64, 64, 3)
  out = pipeline.center_crop({'image': images}, 54)['image']
  np.testing.assert_array_equal(out, images[:, 5:59, 5:59])
  with pytest.raises(ValueError, match='image_size=70'):
    pipeline.center_crop({'image': images}, 70)


def test_in_memory_augmentations_are_checked():
  from research import configlib
  data = configlib.base().data
  data.augment = 'alexnet'  # a streamed augmentation
  with pytest.raises(configlib.ConfigError, match="random_crop"):
    configlib.validate_data(data)
  data.augment = 'random_crop'
  with pytest.raises(configlib.ConfigError, match='image_size'):
    configlib.validate_data(data)
  data.image_size = 54
  configlib.validate_data(data)
