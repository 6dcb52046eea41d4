"""The prepared ImageNet store (research/data/prepared.py), built from the
tests' tiny ILSVRC-2012 in the real tar layout: its squares are the streamed
pipeline's, its batches a function of the step for any process count, its
build resumable, and AlexNet trains on it through the command line."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from research.data import augment
from research.data import prepare
from research.data import prepared
from tests.helpers import load_config, run_cli


@pytest.fixture(scope='module')
def stores(ilsvrc_dirs, tmp_path_factory):
  """{encoding: data_dir of a store}, built from the fixture's imagenet2012."""
  data_dir, manual_dir = ilsvrc_dirs
  out = {}
  for encoding in ('raw', 'jpeg'):
    target = tmp_path_factory.mktemp(f'store_{encoding}')
    prepared.build(str(data_dir), str(manual_dir), encoding, workers=2,
                   out_data_dir=str(target))
    out[encoding] = str(target)
  return out


def _data(store_dir, **overrides):
  c = load_config('alexnet', 'prepared,test').data
  c.data_dir = store_dir
  for k, v in overrides.items():
    c[k] = v
  return c


def _source(data_dir, split):
  builder = tfds.builder('imagenet2012', data_dir=str(data_dir))
  return list(tfds.as_numpy(builder.as_dataset(
      split=split, shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()})))


def test_squares_are_the_streamed_pipelines_within_jpeg_rounding(
    ilsvrc_dirs, stores):
  data_dir, _ = ilsvrc_dirs
  for split in ('train', 'validation'):
    source = _source(data_dir, split)
    want = [augment.to_uint8(augment.resize_and_center_crop(
        augment.decode(tf.constant(ex['image'])), prepared.SIDE)).numpy()
            for ex in source]
    for encoding, tolerance in (('raw', 0), ('jpeg', 3.0)):
      store = prepared._Store(_data(stores[encoding]), split)  # pylint: disable=protected-access
      assert store.size == len(source)
      images, labels = store.rows(range(store.size))
      np.testing.assert_array_equal(labels, [ex['label'] for ex in source])
      diff = np.abs(images.astype(int) - np.stack(want).astype(int))
      assert diff.mean() <= tolerance, (encoding, diff.mean())
      if encoding == 'raw':
        assert diff.max() == 0  # the same squares, bit for bit


def test_ten_crops_match_the_streamed_ones(stores):
  square = prepared._Store(_data(stores['raw']), 'validation').rows([0])[0][0]  # pylint: disable=protected-access
  want = augment.ten_crop(tf.constant(square), 67).numpy()
  np.testing.assert_array_equal(prepared.ten_crop(square, 67), want)


def test_batches_are_a_function_of_the_step_for_any_process_count(stores):
  c = _data(stores['raw'])
  whole = prepared.PreparedTrainBatches(c, 4, seed=3)
  sequential = [whole.chunk(s, 1) for s in range(6)]  # two epochs of 3 steps
  # A resumed run: a fresh object asked for step 4 onwards.
  resumed = prepared.PreparedTrainBatches(c, 4, seed=3).chunk(4, 2)
  assert set(resumed) == {'image', 'label', 'flip', 'pixel_shift'}
  for key in resumed:
    np.testing.assert_array_equal(
        resumed[key], np.concatenate([sequential[4][key], sequential[5][key]]))
  # Two processes: each its half of every global batch.
  halves = [prepared.PreparedTrainBatches(c, 4, 3, i, 2).chunk(0, 6)
            for i in (0, 1)]
  for key in resumed:
    joined = np.concatenate([h[key] for h in halves], axis=1)
    np.testing.assert_array_equal(
        joined, np.concatenate([s[key] for s in sequential]))
  # Epochs differ, and augmentation varies the crops.
  assert not np.array_equal(sequential[0]['label'], sequential[3]['label']) or (
      not np.array_equal(sequential[0]['image'], sequential[3]['image']))
  other_seed = prepared.PreparedTrainBatches(c, 4, seed=4).chunk(0, 1)
  assert not np.array_equal(other_seed['image'], sequential[0]['image'])


def test_the_step_flips_and_colours_what_the_host_drew():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 5, 4, 3), np.uint8)
  shift = np.array([[0, 0, 0], [300, -300, 7], [-2, 1, 0]], np.int16)
  flip = np.array([False, True, False])
  got = np.asarray(prepare.augment_on_device(
      {'image': images, 'flip': flip, 'pixel_shift': shift}))
  want = images.astype(int).copy()
  want[1] = want[1, :, ::-1]
  want = np.clip(want + shift[:, None, None, :], 0, 255)
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(  # a batch without them passes unchanged
      np.asarray(prepare.augment_on_device({'image': images})), images)


def test_an_interrupted_build_finishes_only_what_is_missing(ilsvrc_dirs,
                                                            tmp_path):
  data_dir, manual_dir = ilsvrc_dirs
  out = prepared.build(str(data_dir), str(manual_dir), 'raw', workers=1,
                       out_data_dir=str(tmp_path))
  shards = sorted(p for p in os.listdir(out) if '.array_record-' in p)
  first = os.path.join(out, shards[0])
  kept = os.path.join(out, shards[-1])
  kept_time = os.path.getmtime(kept)
  os.remove(first)  # as if killed before that shard's rename
  with open(first + '.incomplete', 'wb') as f:
    f.write(b'half')
  prepared.build(str(data_dir), str(manual_dir), 'raw', workers=1,
                 out_data_dir=str(tmp_path))
  assert os.path.exists(first) and not os.path.exists(first + '.incomplete')
  if kept != first:
    assert os.path.getmtime(kept) == kept_time  # not rewritten
  info = json.load(open(os.path.join(out, 'dataset_info.json')))
  assert sum(int(n) for s in info['splits'] for n in s['shardLengths']) == 17


def test_alexnet_trains_on_the_store_through_the_cli(stores, tmp_path):
  run_cli('--config=configs/alexnet.py:prepared,test', f'--workdir={tmp_path}',
          f'--config.data.data_dir={stores["raw"]}')
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['step'] == 6  # 12 images, batch 4, 2 epochs
  for name in ('validation', 'validation_10crop'):  # centre crop, 10 crops
    assert results[f'{name}/accuracy'] in {i / 5 for i in range(6)}
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['data']['prepared']


def test_a_missing_store_says_how_to_build_it(tmp_path):
  with pytest.raises(Exception, match='python -m research.data.prepared'):
    prepared.PreparedTrainBatches(_data(str(tmp_path)), 4, 0)
