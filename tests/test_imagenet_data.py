"""ImageNet input: a tiny ILSVRC2012 in the real tar layout, prepared by TFDS's
own imagenet2012 builder, streamed per host; AlexNet's augmentation and crops.
"""
import itertools
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from research import configlib
from research.data import augment
from research.data import streaming
from research.data import tfds_source
from tests import ilsvrc_fixture

S, R = 24, 32  # crop and shorter side, small stand-ins for 227 and 256
TFDS_DIR = tfds.core.tfds_path('datasets/imagenet2012')
LABELS = TFDS_DIR.joinpath('labels.txt').read_text().split()
VAL_SYNSETS = TFDS_DIR.joinpath('validation_labels.txt').read_text().split()


@pytest.fixture
def dirs(ilsvrc_dirs):
  return ilsvrc_dirs


def config(data_dir, manual_dir=None, **overrides):
  c = configlib.base().data
  c.update(dict(
      name='imagenet2012', data_dir=str(data_dir),
      manual_dir=manual_dir and str(manual_dir), streaming=True,
      train_split='train', image_size=S, resize_to=R, augment='alexnet',
      eval_crops=1, shuffle_buffer=8))
  c.update(overrides)
  return c


def identities(images) -> np.ndarray:
  """The fixture index of each image of (..., S, S, 3) by its colour."""
  flat = images.reshape((-1,) + images.shape[-3:])
  return np.array([ilsvrc_fixture.identify(im) for im in flat]).reshape(
      images.shape[:-3])


# The ILSVRC files, through TFDS's imagenet2012 builder and our stream.


def test_train_labels_are_the_synset_folders_tfds_labels(dirs):
  data = streaming.StreamedTrainBatches(config(*dirs, augment='none'), 4, 0)
  assert (data.num_examples, data.steps_per_epoch) == (12, 3)
  epoch = data.chunk(0, 3)
  assert epoch['image'].shape == (3, 4, S, S, 3)
  assert epoch['image'].dtype == np.uint8 and epoch['label'].dtype == np.int32
  ids = identities(epoch['image'])
  assert sorted(ids.ravel()) == list(range(12))  # each image once an epoch
  synset_of = {i: synset for synset, _, i in ilsvrc_fixture.train_files()}
  expected = [LABELS.index(synset_of[i]) for i in ids.ravel()]
  np.testing.assert_array_equal(epoch['label'].ravel(), expected)
  assert data.sample_images().shape == (1, S, S, 3)


def test_val_labels_follow_tfds_validation_label_file_and_pad(dirs):
  batches = streaming.eval_batches(config(*dirs), 'validation', 4)
  got = list(batches)
  assert len(got) == len(batches) == 2
  assert got[1]['image'].shape == (4, S, S, 3)
  mask = np.concatenate([b['mask'] for b in got])
  assert mask.tolist() == [True] * 5 + [False] * 3
  images = np.concatenate([b['image'] for b in got])[mask]
  labels = np.concatenate([b['label'] for b in got])[mask]
  ids = identities(images)
  assert sorted(ids) == list(range(5))
  # File k (sorted names) has line k of validation_labels.txt as its synset.
  np.testing.assert_array_equal(
      labels, [LABELS.index(VAL_SYNSETS[i]) for i in ids])
  # Iterable again, same content: each evaluation reads the split afresh.
  np.testing.assert_array_equal(next(iter(batches))['image'], got[0]['image'])


def test_order_and_augmentation_depend_only_on_seed_and_step(dirs):
  c = config(*dirs)
  whole = streaming.StreamedTrainBatches(c, 4, seed=5).chunk(0, 7)
  again = streaming.StreamedTrainBatches(c, 4, seed=5)
  # Sequential calls share one iterator; 3 steps an epoch, so 2..4 and 5..6
  # cross epoch boundaries.
  parts = [again.chunk(0, 2), again.chunk(2, 3), again.chunk(5, 2)]
  for key in ('image', 'label'):
    np.testing.assert_array_equal(
        np.concatenate([p[key] for p in parts]), whole[key])
  resumed = streaming.StreamedTrainBatches(c, 4, seed=5).chunk(3, 2)
  np.testing.assert_array_equal(resumed['image'], whole['image'][3:5])
  np.testing.assert_array_equal(again.chunk(4, 1)['image'], whole['image'][4:5])
  # Epochs reshuffle; another seed gives another order.
  plain = config(*dirs, augment='none')
  ids = identities(
      streaming.StreamedTrainBatches(plain, 4, seed=5).chunk(0, 6)['image'])
  assert sorted(ids[3:].ravel()) == list(range(12))
  assert not np.array_equal(ids[:3], ids[3:])
  other = streaming.StreamedTrainBatches(plain, 4, seed=6).chunk(0, 3)
  assert not np.array_equal(identities(other['image']), ids[:3])


def test_hosts_stream_disjoint_shards_that_cover_the_split(dirs):
  c = config(*dirs, augment='none')
  seen = []
  for process in range(2):
    host = streaming.StreamedTrainBatches(c, 4, 0, process, 2)
    assert (host.local_batch, host.steps_per_epoch) == (2, 3)
    seen.append(set(identities(host.chunk(0, 3)['image']).ravel()))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(12))


def test_eval_hosts_pad_to_equal_batches_and_ten_crops(dirs):
  c = config(*dirs, eval_crops=10)
  seen, masks = [], []
  for process in range(2):
    got = list(streaming.eval_batches(c, 'validation', 4, process, 2))
    assert len(got) == 2  # 5 images: slices of 3 and 2, each 2 batches of 2
    assert got[0]['image'].shape == (2, 10, S, S, 3)
    mask = np.concatenate([b['mask'] for b in got])
    masks.append(mask.sum())
    images = np.concatenate([b['image'] for b in got])[mask]
    seen.extend(identities(images[:, 0]))
  assert masks == [3, 2] and sorted(seen) == list(range(5))


def test_missing_manual_files_name_manual_dir(tmp_path):
  with pytest.raises(tfds_source.DataError,
                     match='manual_dir.*ILSVRC2012_img_train.tar'):
    streaming.StreamedTrainBatches(config(tmp_path / 'tfds', tmp_path), 4, 0)
  # Only the validation tar: TFDS itself would prepare without a train split.
  (tmp_path / 'ILSVRC2012_img_val.tar').write_bytes(b'')
  with pytest.raises(tfds_source.DataError, match='lacks ILSVRC2012_img_train'):
    streaming.eval_batches(config(tmp_path / 'tfds', tmp_path), 'validation', 4)
  start = time.perf_counter()
  with pytest.raises(tfds_source.DataError, match='--config.data.manual_dir'):
    streaming.StreamedTrainBatches(config(tmp_path / 'tfds'), 4, 0)
  assert time.perf_counter() - start < 10  # no network retries


def test_config_mistakes_are_refused(dirs):
  with pytest.raises(configlib.ConfigError, match='crop_flip'):
    streaming.StreamedTrainBatches(config(*dirs, augment='crop_flp'), 4, 0)
  with pytest.raises(configlib.ConfigError, match='eval_crops'):
    streaming.eval_batches(config(*dirs, eval_crops=5), 'validation', 4)
  with pytest.raises(configlib.ConfigError, match='batch_size'):
    streaming.StreamedTrainBatches(config(*dirs), 16, 0)


@pytest.mark.parametrize('name', ['imagenette', 'imagenet_resized/64x64'])
def test_stand_ins_stream_by_name(name, tmp_path):
  """Plumbing only: TFDS's mock yields random images of random sizes."""
  builder = tfds.builder(name, data_dir=str(tmp_path))
  for fname in tfds_source._expected_files(builder):  # pylint: disable=protected-access
    (tmp_path / fname).write_bytes(b'')  # TFDS's prepare is mocked out
  c = config(tmp_path, tmp_path, name=name, eval_crops=10)
  with tfds.testing.mock_data(num_examples=8,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    train = streaming.StreamedTrainBatches(c, 4, 0)
    batch = train.chunk(0, 2)
    evals = list(streaming.eval_batches(c, 'validation', 4))
  assert batch['image'].shape == (2, 4, S, S, 3)
  assert evals[0]['image'].shape == (4, 10, S, S, 3)


# The augmentations themselves, on images with known pixels.


def position_image(height, width):
  """uint8 image whose red is the row and green the column."""
  y, x = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return np.stack([y, x, np.full_like(y, 7)], -1).astype(np.uint8)


def test_ten_crops_are_corners_centre_and_mirrors():
  image = position_image(9, 9)
  crops = augment.ten_crop(tf.constant(image), 5).numpy()
  windows = [image[:5, :5], image[:5, 4:], image[4:, :5], image[4:, 4:],
             image[2:7, 2:7]]
  np.testing.assert_array_equal(crops[:5], windows)
  np.testing.assert_array_equal(crops[5:], [w[:, ::-1] for w in windows])
  np.testing.assert_array_equal(augment.center_crop(tf.constant(image), 5),
                                windows[4])


def test_resize_keeps_the_central_square_of_the_shorter_side():
  wide = np.zeros((40, 80, 3), np.uint8)
  wide[:, 20:60] = 200  # the central 40x40
  for image in (wide, wide.transpose(1, 0, 2)):
    out = augment.resize_and_center_crop(tf.constant(image), 32).numpy()
    assert out.shape == (32, 32, 3) and np.all(np.abs(out - 200) < 1e-3)
  # PNG (imagenet_resized) and JPEG both decode to RGB.
  np.testing.assert_array_equal(augment.decode(tf.io.encode_png(wide)), wide)
  grey = tf.io.encode_jpeg(tf.constant(wide[..., :1]), quality=100)
  assert augment.decode(grey).shape == (40, 80, 3)


def map_seeds(fn, n):
  """fn(seed) for n stateless seeds, run as a tf.data map (fast)."""
  ds = tf.data.Dataset.range(n).map(
      lambda i: fn(tf.stack([tf.constant(11, tf.int64), i]))).batch(n)
  return next(ds.as_numpy_iterator())


def test_random_crops_lie_inside_the_image_and_flip_half_the_time():
  resized = augment.resize_and_center_crop(
      tf.constant(position_image(40, 50)), R)
  base = augment.to_uint8(resized).numpy()
  outs = map_seeds(lambda s: augment.crop_and_augment(resized, s, S,
                                                      'crop_flip'), 200)
  offsets, flips = set(), 0
  for out in outs:
    found = [(y, x, f) for y, x, f in itertools.product(
        range(R - S + 1), range(R - S + 1), (False, True))
             if np.array_equal(out, base[y:y + S, x:x + S, :][:, ::-1]
                               if f else base[y:y + S, x:x + S])]
    assert len(found) == 1, 'not a window of the resized image'
    offsets.add(found[0][:2])
    flips += found[0][2]
  assert 70 < flips < 130  # Binomial(200, 1/2): over 4 sigma either side
  assert len(offsets) > 40  # of 81 possible; about 74 expected


def test_pca_lighting_adds_one_rgb_vector_per_image_at_the_papers_scale():
  rng = np.random.default_rng(0)
  image = rng.integers(60, 190, (6, 5, 3)).astype(np.float32)
  outs = map_seeds(lambda s: augment.to_uint8(augment.pca_lighting(
      tf.constant(image), s)), 2000).astype(np.float32)
  shifts = outs - image
  # Integer pixels, so rounding after the shift leaves it the same everywhere.
  np.testing.assert_array_equal(shifts, np.broadcast_to(
      shifts[:, :1, :1], shifts.shape))
  shift = shifts[:, 0, 0]  # (2000, 3)
  eigvec = np.array(augment.PCA_EIGVEC)
  np.testing.assert_allclose(eigvec.T @ eigvec, np.eye(3), atol=1e-3)
  along = shift @ eigvec  # coordinates along p1, p2, p3
  expected = 0.1 * 0.2175 * 255  # std of a1 * l1 on the 0-255 scale: 5.5
  assert abs(along[:, 0].std() / expected - 1) < 0.1
  assert abs(along[:, 0].mean()) < 0.5
  # p2, p3 carry sub-level shifts (0.5 and 0.1 std) that rounding mostly hides.
  assert along[:, 1].std() < 1.2 and along[:, 2].std() < 1.2
