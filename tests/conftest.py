"""Shared fixtures: real MNIST prepared once per session, and the datasets
and nets several modules use (helpers live in tests/helpers.py)."""
import concurrent.futures

import pytest

from research import xla_flags

# As the commands do (research/main.py): the in-process runs of the tests
# train with the same XLA CPU settings.
xla_flags.apply()

from tests.helpers import MNIST_FILES


@pytest.fixture(scope='session')
def mnist_data_dir(tmp_path_factory):
  """A TFDS data_dir with MNIST prepared offline from ../shared/data/mnist,
  through the project's own loader (the path a real run takes)."""
  import ml_collections
  from research.data import tfds_source
  if not MNIST_FILES.is_dir():
    pytest.fail(f'Real MNIST files are expected in {MNIST_FILES}.')
  data_dir = tmp_path_factory.mktemp('tfds')
  config = ml_collections.ConfigDict({
      'name': 'mnist', 'data_dir': str(data_dir),
      'manual_dir': str(MNIST_FILES), 'restore_file_order': False})
  tfds_source.load_splits(config, {'test': 'test[:1]'})
  return str(data_dir)


@pytest.fixture(scope='session')
def ilsvrc_dirs(tmp_path_factory):
  """(data_dir, manual_dir): a tiny ILSVRC2012 in the real download layout
  (tests/ilsvrc_fixture.py), prepared once by TFDS's imagenet2012 builder."""
  import ml_collections
  from research.data import tfds_source
  from tests import ilsvrc_fixture
  root = tmp_path_factory.mktemp('ilsvrc')
  manual_dir = ilsvrc_fixture.write(root / 'manual')
  data_dir = root / 'tfds'
  tfds_source.prepared_builder(ml_collections.ConfigDict({
      'name': 'imagenet2012', 'data_dir': str(data_dir),
      'manual_dir': str(manual_dir)}))
  return data_dir, manual_dir


@pytest.fixture(scope='session')
def multidigit_data_dir(tmp_path_factory):
  """A TFDS data_dir with mnist_multidigit/small (2,000 / 500 / 500 numbers)
  composed from the real MNIST files by the project's builder."""
  import ml_collections
  from research.data import tfds_source
  data_dir = tmp_path_factory.mktemp('tfds_multidigit')
  tfds_source.prepared_builder(ml_collections.ConfigDict({
      'name': 'mnist_multidigit/small', 'data_dir': str(data_dir),
      'manual_dir': str(MNIST_FILES)}))
  return str(data_dir)


@pytest.fixture(scope='session')
def planted_nets():
  """(train, test, net, second_net): real MNIST digits planted at random
  places on 32x32 canvases (tests/planted_digits.py), and two narrow convnets
  trained on them from different seeds (94-96% test accuracy). The two train
  in two threads: one small net's steps leave a core idle, and each net comes
  out the same as when trained alone."""
  from tests import planted_digits
  train = planted_digits.planted('train', 20_000, seed=0)
  test = planted_digits.planted('t10k', 1_000, seed=1)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    nets = list(pool.map(lambda seed: planted_digits.train_convnet(train, seed),
                         (0, 1)))
  return (train, test, *nets)
