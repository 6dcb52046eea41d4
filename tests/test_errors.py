"""Bad input stops the run with one paragraph that names the fix, and keeps what
was already written."""
import gzip
import io
import logging
import shutil

import pytest

from research import checkpoints
from research import configlib
from research import train
from research.data import tfds_source
from tests.helpers import MNIST_FILES, read_jsonl
from tests.helpers import load_config


def test_resuming_with_a_different_config_is_refused(tmp_path):
  train.train_and_evaluate(load_config('neuron', 'test'), tmp_path)
  changed = load_config('neuron', 'test')
  changed.optimizer.learning_rate = 0.5
  changed.data.data_dir = '/elsewhere'  # a location, not the experiment
  with pytest.raises(configlib.ConfigError) as error:
    train.train_and_evaluate(changed, tmp_path)
  message = str(error.value)
  assert 'optimizer.learning_rate: 1.0 -> 0.5' in message
  assert 'data_dir' not in message and '--allow_config_change' in message
  train.train_and_evaluate(changed, tmp_path, allow_config_change=True)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
  config = load_config('neuron', 'test')
  config.checkpoint_every_epochs = 100
  config.eval_every_epochs = 100
  # The learning rate is 1e30 at step 150 and inf from 151: the weights blow up.
  config.optimizer.schedule.name = 'piecewise'
  config.optimizer.schedule.boundaries_epochs = (150, 151)
  config.optimizer.schedule.scales = (1e30, 1e30)
  with pytest.raises(train.TrainingError,
                     match=r'became nan at step 15\d; the last good checkpoint '
                           r'\(step 100\) is kept'):
    train.train_and_evaluate(config, tmp_path)
  state, step = checkpoints.load_latest(tmp_path)
  assert step == 100 and float(abs(state['params']['unit']['kernel']).max()) < 1e3


def test_corrupt_checkpoint_is_named_with_the_way_out(tmp_path):
  config = load_config('neuron', 'test')
  train.train_and_evaluate(config, tmp_path)
  for data_file in (tmp_path / 'checkpoints' / '300' / 'state').rglob('d/*'):
    data_file.write_bytes(data_file.read_bytes()[:20])  # truncated
  config.num_epochs += 100  # not finished: the run must read its checkpoint
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'checkpoints/300 cannot be read.*Delete that folder'):
    train.train_and_evaluate(config, tmp_path, allow_config_change=True)
  assert (tmp_path / 'results.json').exists()  # nothing written is lost


def test_reads_left_in_flight_on_a_bad_checkpoint_print_nothing(tmp_path):
  """Once a checkpoint is reported unreadable, asyncio's reports of its other
  failed reads (a traceback each) are dropped; other errors still print."""
  stream = io.StringIO()
  handler = logging.StreamHandler(stream)
  logging.getLogger().addHandler(handler)
  try:
    bad = tmp_path / 'checkpoints' / '300'
    checkpoints._unreadable(bad, ValueError('damaged'))
    late_read = ValueError(f'OUT_OF_RANGE: reading {bad}/state/d/1')
    logging.getLogger('asyncio').error(
        'Task exception was never retrieved',
        exc_info=(ValueError, late_read, None))
    logging.getLogger('asyncio').error('something else failed')
  finally:
    logging.getLogger().removeHandler(handler)
  assert 'OUT_OF_RANGE' not in stream.getvalue()
  assert 'never retrieved' not in stream.getvalue()
  assert 'something else failed' in stream.getvalue()


def test_dataset_file_with_a_wrong_checksum(tmp_path):
  """A valid gzip of different labels (one label changed): only TFDS's
  checksum can tell, and the error says so."""
  from tensorflow_datasets.core.download import download_manager
  manual = tmp_path / 'manual'
  shutil.copytree(MNIST_FILES, manual, ignore=shutil.ignore_patterns('*.md'))
  labels = manual / 't10k-labels-idx1-ubyte.gz'
  data = bytearray(gzip.decompress(labels.read_bytes()))
  data[8] = (data[8] + 1) % 10  # the first test label, another digit
  labels.write_bytes(gzip.compress(bytes(data)))
  config = load_config('mnist_nielsen', 'test').data
  config.data_dir, config.manual_dir = str(tmp_path / 'tfds'), str(manual)
  with pytest.raises(tfds_source.DataError, match='checksum') as error:
    tfds_source.load_splits(config, {'test': 'test'})
  causes, cause = [], error.value
  while cause is not None:
    causes.append(cause)
    cause = cause.__cause__ or cause.__context__
  assert any(isinstance(c, download_manager.NonMatchingChecksumError)
             for c in causes), causes


def test_half_written_checkpoint_is_never_loaded(tmp_path):
  """A save cut short leaves Orbax's uncommitted tmp folder; resume ignores it
  and uses the last committed checkpoint."""
  config = load_config('neuron', 'test')
  config.checkpoint_every_epochs = 100
  train.train_and_evaluate(config, tmp_path)
  ckpts = tmp_path / 'checkpoints'
  shutil.copytree(ckpts / '300', ckpts / '400.orbax-checkpoint-tmp-1234')
  for marker in (ckpts / '400.orbax-checkpoint-tmp-1234').rglob('commit_success.txt'):
    marker.unlink()
  config.num_epochs = 400
  results = train.train_and_evaluate(config, tmp_path, allow_config_change=True)
  assert results['step'] == 400
  # Resumed from 300 and trained 301-400 (loading the tmp folder would train none).
  assert any(r['step'] == 400 and 'train/loss' in r
             for r in read_jsonl(tmp_path / 'metrics.jsonl'))
