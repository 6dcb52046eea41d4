"""Data: the stoplight rule, real MNIST through TFDS, batching and its order."""
import gzip
import time

import ml_collections
import numpy as np
import pytest

from research.data import pipeline
from research.data import reachability
from research.data import stoplight
from research.data import tfds_source
from tests.helpers import MNIST_FILES


def test_stoplight_rule_is_green_and_not_red():
  data = stoplight.load()
  assert data['image'].shape == (8, 3)
  for (green, yellow, red), label in zip(data['image'], data['label']):
    assert label == (green == 1 and red == 0)


def mnist_config(data_dir, **overrides):
  return ml_collections.ConfigDict(dict(
      name='mnist', data_dir=data_dir, manual_dir=None,
      restore_file_order=True, **overrides))


def test_mnist_nielsen_split_is_the_files_first_50000(mnist_data_dir):
  splits = tfds_source.load_splits(mnist_config(mnist_data_dir), {
      'train': 'train[:50000]', 'validation': 'train[50000:]', 'test': 'test'})
  assert {k: len(v['label']) for k, v in splits.items()} == {
      'train': 50_000, 'validation': 10_000, 'test': 10_000}
  assert splits['train']['image'].dtype == np.uint8
  def idx(name, offset):
    return np.frombuffer(gzip.open(MNIST_FILES / name).read(), np.uint8,
                         offset=offset)
  images = idx('train-images-idx3-ubyte.gz', 16).reshape(-1, 28, 28, 1)
  labels = idx('train-labels-idx1-ubyte.gz', 8)
  np.testing.assert_array_equal(splits['train']['image'], images[:50_000])
  np.testing.assert_array_equal(splits['validation']['label'], labels[50_000:])
  test_labels = idx('t10k-labels-idx1-ubyte.gz', 8)
  np.testing.assert_array_equal(splits['test']['label'], test_labels)


def test_each_process_reads_its_own_shard(mnist_data_dir):
  """Three processes' shards of a split are disjoint, in order, and together
  the whole split (tfds.split_for_jax_process), even when it does not divide."""
  builder = tfds_source.prepared_builder(mnist_config(mnist_data_dir))
  whole = tfds_source.read_shard(builder, 'test')
  shards = [tfds_source.read_shard(builder, 'test', i, 3) for i in range(3)]
  assert [len(s['label']) for s in shards] == [3334, 3333, 3333]
  for key in ('image', 'label'):
    np.testing.assert_array_equal(
        np.concatenate([s[key] for s in shards]), whole[key])


def test_missing_data_offline_fails_fast_naming_manual_dir(tmp_path,
                                                           monkeypatch):
  # Simulates a machine without network even where this test has one.
  monkeypatch.setattr(reachability, 'host_reachable', lambda url: False)
  start = time.perf_counter()
  with pytest.raises(tfds_source.DataError, match='--config.data.manual_dir'):
    tfds_source.load_splits(mnist_config(str(tmp_path)), {'test': 'test'})
  assert time.perf_counter() - start < 30


def test_network_probe_answers_within_seconds():
  start = time.perf_counter()
  reachability.host_reachable('https://storage.googleapis.com/x', timeout_s=3)
  assert time.perf_counter() - start < 10


def test_network_probe_answer_is_right():
  """A port that listens is reachable; the same port closed is not."""
  import socket
  server = socket.socket()
  server.bind(('127.0.0.1', 0))
  server.listen()
  port = server.getsockname()[1]
  assert reachability.host_reachable(f'http://127.0.0.1:{port}/file')
  server.close()
  assert not reachability.host_reachable(f'http://127.0.0.1:{port}/file')
  assert not reachability.host_reachable('http://no-such-host.invalid/x')


def test_manual_dir_without_the_files_names_them(tmp_path):
  config = mnist_config(str(tmp_path / 'tfds'), )
  config.manual_dir = str(tmp_path)
  with pytest.raises(tfds_source.DataError, match='train-images-idx3-ubyte.gz'):
    tfds_source.load_splits(config, {'test': 'test'})


def test_train_batches_order_depends_only_on_seed_and_step():
  arrays = {'image': np.arange(100)[:, None], 'label': np.arange(100)}
  a = pipeline.TrainBatches(arrays, batch_size=10, seed=3)
  b = pipeline.TrainBatches(arrays, batch_size=10, seed=3)
  np.testing.assert_array_equal(a.indices(0, 25), b.indices(0, 25))
  # Any window equals the same steps of a longer read (what resume relies on).
  np.testing.assert_array_equal(a.indices(7, 9), b.indices(0, 25)[7:16])
  epoch0, epoch1 = a.indices(0, 10), a.indices(10, 10)
  assert sorted(epoch0.ravel()) == list(range(100))
  assert not np.array_equal(epoch0, epoch1)
  other_seed = pipeline.TrainBatches(arrays, batch_size=10, seed=4)
  assert not np.array_equal(other_seed.indices(0, 10), epoch0)


def test_hosts_take_disjoint_rows_of_each_global_batch():
  arrays = {'image': np.arange(64)[:, None], 'label': np.arange(64)}
  whole = pipeline.TrainBatches(arrays, 8, seed=0).chunk(0, 4)['label']
  parts = [pipeline.TrainBatches(arrays, 8, 0, p, 2).chunk(0, 4)['label']
           for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


def test_eval_batches_pad_and_mask():
  arrays = {'image': np.ones((25, 2), np.float32), 'label': np.arange(25)}
  batches = pipeline.eval_batches(arrays, 10)
  assert batches['image'].shape == (3, 10, 2)
  assert batches['mask'].sum() == 25 and not batches['mask'][2, 5:].any()


@pytest.mark.slow  # 30 s: two processes each preparing MNIST
def test_processes_preparing_the_same_dataset_at_once_both_succeed(tmp_path):
  """launch.multihost_local on a fresh machine: every process prepares MNIST
  into the same data_dir; the one whose rename comes second must go on."""
  import subprocess
  import sys
  from tests.helpers import REPO
  script = (
      'import sys, ml_collections\n'
      'from research.data import tfds_source\n'
      f'c = ml_collections.ConfigDict(dict(name="mnist", data_dir="{tmp_path}",'
      f' manual_dir="{MNIST_FILES}", restore_file_order=False))\n'
      'print(len(tfds_source.load_splits(c, {"t": "test[:10]"})["t"]["label"]))\n')
  procs = [subprocess.Popen([sys.executable, '-c', script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  for proc in procs:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == '10'
