"""Whole TFDS splits as numpy arrays, prepared offline from original files.

Preparing needs the dataset's original download files. With
`config.data.manual_dir` TFDS takes them from that folder (matching names,
sizes and sha256). Without it TFDS downloads, and offline its HTTP retries take
minutes to fail; so the download host is probed first and an unreachable one
stops the run at once with the flag to set.
"""
import difflib
import os
import re

from absl import logging
import numpy as np

from research import errors
from research.data import reachability


class DataError(errors.UserError, RuntimeError):
  """The dataset cannot be loaded; the message says what to change."""


def _expected_files(builder) -> list:
  """The download files `builder`'s config reads, by name.

  TFDS lists every config's URLs on the builder (imagenette's six archives,
  imagenet_resized's nine), so those with several configs are spelled out; a
  manual-download set (imagenet2012) has URLs without file names.
  """
  config = builder.builder_config
  if hasattr(builder, 'MANUAL_FILES'):  # this repo's builders
    return list(builder.MANUAL_FILES)
  if builder.name == 'imagenet2012':
    return ['ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar']
  if builder.name == 'imagenette':
    return [f'{config.dirname}.tgz']
  if builder.name == 'imagenet_resized':
    parts = (['train_part1', 'train_part2'] if config.size == 64
             else ['train'])
    return [f'Imagenet{config.size}_{p}_npz.zip' for p in parts + ['val']]
  return sorted({info.filename for info in builder.url_infos.values()
                 if info.filename}) if builder.url_infos else []


def _prepare(builder, manual_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  expected = _expected_files(builder)
  name = builder.info.full_name
  # This repo's builders that download (svhn_full) name their URLS; TFDS's
  # manual-only ones (imagenet2012) have instructions and no URLs.
  own_urls = list(getattr(builder, 'URLS', {}).values())
  if not manual_dir and builder.MANUAL_DOWNLOAD_INSTRUCTIONS and not own_urls:
    raise DataError(f'{name} is not prepared in {builder.data_dir_root!r} and '
                    'cannot be downloaded by TFDS. Pass '
                    '--config.data.manual_dir=DIR, a folder with '
                    f'{", ".join(expected) or "its original files"}.')
  if manual_dir:
    if not os.path.isdir(manual_dir):
      raise DataError(f'config.data.manual_dir={manual_dir!r} is not a '
                      f'directory. Point --config.data.manual_dir at the folder '
                      f'holding the original files of {name}.')
    missing = [f for f in expected
               if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
      raise DataError(f'{name}: config.data.manual_dir={manual_dir!r} lacks '
                      f'{", ".join(missing)}. Put the original download files '
                      'there (names as TFDS expects) or fix '
                      '--config.data.manual_dir.')
    config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                          try_download_gcs=False)
  else:
    urls = own_urls or list(builder.url_infos or ())
    if not urls or not reachability.host_reachable(urls[0]):
      files = f' ({", ".join(expected)})' if expected else ''
      raise DataError(
          f'{name} is not prepared in {builder.data_dir_root!r} and cannot be '
          f'downloaded (no network). Pass --config.data.manual_dir=DIR, a '
          f'folder with its original download files{files}; for MNIST in this '
          'repo: --config.data.manual_dir=../shared/data/mnist.')
    config = tfds.download.DownloadConfig()
  try:
    builder.download_and_prepare(download_config=config)
  except Exception as e:  # TFDS raises many types; all mean the same to us
    raise DataError(f'Preparing {name} from '
                    f'{manual_dir or "the network"} failed: {e}. Check the '
                    'files in --config.data.manual_dir (a wrong checksum means '
                    'a corrupt or different file).') from e


def _file_order(split: str, n: int) -> np.ndarray:
  """Indices that put a stored TFDS split back into its source file's order.

  TFDS writes examples sorted by a salted hash of their key (salt: the split
  name). For builders whose keys are record indices (mnist, fashion_mnist) the
  rank of record i's hash is its stored position, so stored[rank] is the file.
  """
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top
  hasher = hashing.Hasher(split)
  hashes = np.array([hasher.hash_key(i) for i in range(n)], dtype=object)
  return np.argsort(np.argsort(hashes))


def prepared_builder(data_config):
  """The TFDS builder of config.data.name, prepared offline if need be."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from research.data import builders  # noqa: F401  pylint: disable=g-import-not-at-top
  known = tfds.list_builders()
  base = data_config.name.split('/')[0].split(':')[0]
  if base not in known:  # before tfds.builder, which would look on GCS too
    close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
    hint = f' Did you mean: {", ".join(close)}?' if close else ''
    raise DataError(f'Unknown dataset {data_config.name!r}.{hint} Fix '
                    '--config.data.name (a TFDS name, '
                    'tfds.list_builders(), or this repo\'s mnist_multidigit '
                    'or svhn_full).')
  try:
    builder = tfds.builder(data_config.name, data_dir=data_config.data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
    # e.g. an unknown config after the '/': TFDS lists the close ones.
    raise DataError(f'Cannot use dataset {data_config.name!r}: '
                    f'{" ".join(str(e).split())[:600]} Fix '
                    '--config.data.name.') from e
  if not builder.is_prepared():
    try:
      _prepare(builder, data_config.manual_dir)
    except DataError:
      # The processes of a multi-process run on one machine prepare together;
      # the first to finish wins, the others' final rename fails.
      builder = tfds.builder(data_config.name, data_dir=data_config.data_dir)
      if not builder.is_prepared():
        raise
  return builder


def labels(data: dict) -> np.ndarray:
  """int32 labels: a class per example, or for numbers (svhn_full,
  mnist_multidigit) rows [length class, digit 1, ..., digit 5] where the length
  class is 0..5 or 6 for more than 5 digits and absent digits are -1."""
  if 'digits' not in data:
    return data['label'].astype(np.int32)
  length = np.minimum(data['length'], data['digits'].shape[1] + 1)
  return np.concatenate([length[:, None], data['digits']], 1).astype(np.int32)


def corrupt(builder, split: str, error: Exception) -> DataError:
  """The error for a prepared file that no longer reads (TensorFlow's
  DataLossError: a damaged or truncated TFRecord)."""
  names = [n for n in builder.info.splits if re.search(rf'\b{n}\b', str(split))]
  files = ', '.join(f for n in names for f in builder.info.splits[n].filenames)
  message = str(getattr(error, 'message', error))
  message = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', message)  # TF's op names
  message = ' '.join(message.split())[:200]
  return DataError(
      f'The prepared {builder.info.full_name} in {builder.data_dir} is '
      f'damaged ({files or split}: {message}). Delete that folder (rm -r '
      f'{builder.data_dir}) and rerun: the dataset is prepared again from '
      'its original files.')


def read_shard(builder, split: str, process_index: int = 0,
               process_count: int = 1) -> dict:
  """This process's even share of a stored split (`tfds.split_for_jax_process`);
  the whole split for one process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  shard = tfds.split_for_jax_process(split, process_index=process_index,
                                     process_count=process_count)
  try:
    data = tfds.as_numpy(builder.as_dataset(split=shard, batch_size=-1,
                                            shuffle_files=False))
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    raise corrupt(builder, split, e) from e
  return {'image': data['image'], 'label': labels(data)}


def exchange_shards(shard: dict, split: str, process_index: int) -> dict:
  """The whole split, in stored order, from every process's own shard.

  Each host reads only its shard from storage. An in-memory split is small, so
  the hosts then swap shards over JAX's collectives: every host can gather its
  rows of any global batch, and the data order stays a function of (seed,
  step) whatever the process count.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  sizes = multihost_utils.process_allgather(
      np.int64(len(shard['label']))).tolist()
  start = sum(sizes[:process_index])
  logging.info('%s: process %d read rows %d:%d of %d; the other %d processes '
               'sent the rest', split, process_index, start,
               start + sizes[process_index], sum(sizes), len(sizes) - 1)
  longest = max(sizes)
  padded = {k: np.concatenate([v, np.zeros((longest - len(v),) + v.shape[1:],
                                           v.dtype)])
            for k, v in shard.items()}
  stacked = multihost_utils.process_allgather(padded)  # (processes, longest, ...)
  return {k: np.concatenate([v[p, :n] for p, n in enumerate(sizes)])
          for k, v in stacked.items()}


def load_splits(data_config, specs: dict, process_index: int = 0,
                process_count: int = 1) -> dict:
  """Loads {key: split spec} (TFDS slicing syntax) as {key: {'image','label'}},
  whole on every process; each process reads only its shard of the files."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = prepared_builder(data_config)
  whole = {}  # base split name -> arrays, each loaded once
  def split_arrays(name):
    if name not in whole:
      data = read_shard(builder, name, process_index, process_count)
      if process_count > 1:
        data = exchange_shards(data, name, process_index)
      if data_config.restore_file_order:
        rank = _file_order(name, len(data['label']))
        data = {k: v[rank] for k, v in data.items()}
      whole[name] = data
    return whole[name]

  out = {}
  for key, spec in specs.items():
    try:
      parts = tfds.core.ReadInstruction.from_spec(spec).to_absolute(
          builder.info.splits)
    except (ValueError, KeyError, AssertionError) as e:
      raise DataError(f'Bad split {spec!r} for {builder.info.full_name} '
                      f'(splits: {", ".join(builder.info.splits)}): {e}') from e
    pieces = [{k: v[p.from_:p.to] for k, v in split_arrays(p.splitname).items()}
              for p in parts]
    out[key] = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
  return out
