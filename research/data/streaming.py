r"""Big TFDS splits (ImageNet) streamed through tf.data, one shard per host.

Nothing is held in memory but the shuffle buffer of encoded images
(config.data.shuffle_buffer; ImageNet JPEGs average about 110 kB, so 10,000 take
about 1.1 GB) and a few prefetched batches. Each host reads its own slice of the split
(`tfds.split_for_jax_process`) and decodes, crops and augments it in parallel
(research/data/augment.py, AlexNet section 2 and 4.1).

The data order and every augmentation depend only on (seed, step): epoch e
shuffles files and the buffer with seeds drawn from (seed, host, e), and the
example at position p of epoch e is augmented with a seed folded from
(seed, host, e, p). So `chunk(k, n)` on a fresh object returns what sequential
calls would have returned for steps k..k+n-1, which is what resuming needs.
Resuming mid-epoch re-reads (without decoding) that epoch's records up to the
resume point, since the shuffle buffer's state depends on all of them.

Throughput of this pipeline at AlexNet's settings: `python -m
benchmarks.input_pipeline --data_dir=DIR --manual_dir=DIR`.
"""
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from research import configlib
from research.data import augment
from research.data import tfds_source

_AUTOTUNE = tf.data.AUTOTUNE
# The map functions branch on Python values only (tf.cond where on tensors), so
# AutoGraph's source rewriting would only add seconds of tracing.
_graph_fn = tf.autograph.experimental.do_not_convert


def _local_batch(batch_size: int, process_count: int) -> int:
  if batch_size % process_count:
    raise configlib.ConfigError(
        f'Batch size {batch_size} does not split over {process_count} '
        'processes; make it a multiple of the process count.')
  return batch_size // process_count


def _read(builder, split, **kwargs) -> tf.data.Dataset:
  """Examples {'image': encoded bytes, 'label'}: the shuffle buffer holds the
  small encoded images, and each is decoded once, in the parallel map."""
  try:
    return builder.as_dataset(
        split=split, decoders={'image': tfds.decode.SkipDecoding()}, **kwargs)
  except ValueError as e:  # TFDS's unknown or malformed split
    raise tfds_source.DataError(
        f'Bad split {split!r} for {builder.info.full_name}: {e}') from e


def _num_examples(builder, split) -> int:
  # TFDS asserts the exact cardinality of every split it reads, from its
  # metadata, so this reads no records.
  return int(_read(builder, split).cardinality())


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # parallel map and interleave keep their order
  return options


class _HostShard:
  """This host's slice of a split: the validated config's TFDS builder and
  image sizes, this host's rows of a batch, and the examples in the split
  (`num_examples`) and in the slice (`shard_examples`)."""

  def __init__(self, data_config, split: str, batch_size: int,
               process_index: int, process_count: int, drop_remainder: bool):
    configlib.validate_data(data_config)
    self.local_batch = _local_batch(batch_size, process_count)
    self.image_size = data_config.image_size
    self.resize_to = data_config.resize_to
    self._builder = tfds_source.prepared_builder(data_config)
    self.num_examples = _num_examples(self._builder, split)
    self._split = tfds.split_for_jax_process(
        split, process_index=process_index, process_count=process_count,
        drop_remainder=drop_remainder)
    self.shard_examples = _num_examples(self._builder, self._split)


class StreamedTrainBatches(_HostShard):
  """This host's rows of each global training batch, a function of the step.

  `chunk(k, n)` keeps one live iterator for sequential calls; a non-sequential
  `k` rebuilds the pipeline at k's epoch and skips to it.
  """

  def __init__(self, data_config, batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    # Equal shards (the remainder dropped), so every host runs as many steps.
    super().__init__(data_config, data_config.train_split, batch_size,
                     process_index, process_count, drop_remainder=True)
    self.augment = data_config.augment
    self.shuffle_buffer = max(1, data_config.shuffle_buffer)
    self.steps_per_epoch = self.shard_examples // self.local_batch
    if self.steps_per_epoch == 0:
      raise configlib.ConfigError(
          f'config.batch_size={batch_size} exceeds the {self.num_examples} '
          f'training examples ({self.shard_examples} per process); lower '
          '--config.batch_size or use a larger --config.data.train_split.')
    self._key = tf.constant([seed, process_index], tf.int64)
    self._iterator = None
    self._next_step = None

  def records(self, epoch, skip: int = 0) -> tf.data.Dataset:
    """Epoch `epoch` (a tensor) as {'image', 'label', 'seed'} from position
    `skip` on; records only, so skipping decodes nothing."""
    key = tf.random.experimental.stateless_fold_in(self._key, epoch)
    file_seed, buffer_seed = tf.unstack(tf.random.stateless_uniform(
        (2,), key, minval=None, maxval=None, dtype=tf.int64))
    read_config = tfds.ReadConfig(shuffle_seed=file_seed, try_autocache=False,
                                  options=_options())
    ds = _read(self._builder, self._split, shuffle_files=True,
               read_config=read_config)
    ds = ds.shuffle(self.shuffle_buffer, seed=buffer_seed)
    ds = ds.take(self.steps_per_epoch * self.local_batch).enumerate().skip(skip)
    return ds.map(_graph_fn(lambda pos, ex: {
        'image': ex['image'], 'label': ex['label'],
        'seed': tf.random.experimental.stateless_fold_in(key, pos)}))

  def dataset(self, first_step: int = 0) -> tf.data.Dataset:
    """Batches {'image', 'label'} of steps first_step, first_step + 1, ...
    without end."""
    epoch, pos = divmod(first_step, self.steps_per_epoch)
    # Later epochs come from one flat_map, so the parallel decode below keeps
    # running across epoch boundaries instead of draining at each.
    later = tf.data.Dataset.range(epoch + 1, np.iinfo(np.int64).max).flat_map(
        _graph_fn(lambda e: self.records(e, 0)))
    ds = self.records(tf.constant(epoch, tf.int64), pos * self.local_batch)
    ds = ds.concatenate(later)
    size, resize_to, kind = self.image_size, self.resize_to, self.augment
    ds = ds.map(_graph_fn(lambda ex: {
        'image': augment.train_image(ex['image'], ex['seed'], size, resize_to,
                                     kind),
        'label': tf.cast(ex['label'], tf.int32)}), num_parallel_calls=_AUTOTUNE)
    ds = ds.batch(self.local_batch, drop_remainder=True)
    return ds.prefetch(_AUTOTUNE).with_options(_options())

  def chunk(self, first_step: int, num_steps: int) -> dict:
    """{'image': uint8 (num_steps, local_batch, S, S, 3), 'label': int32
    (num_steps, local_batch)} of steps first_step..first_step+num_steps-1."""
    if self._iterator is None or first_step != self._next_step:
      self._iterator = self.dataset(first_step).as_numpy_iterator()
    s = self.image_size
    out = {'image': np.empty((num_steps, self.local_batch, s, s, 3), np.uint8),
           'label': np.empty((num_steps, self.local_batch), np.int32)}
    for i in range(num_steps):
      try:
        batch = next(self._iterator)
      except tf.errors.DataLossError as e:
        raise tfds_source.corrupt(self._builder, self._split, e) from e
      for k in out:
        out[k][i] = batch[k]
    self._next_step = first_step + num_steps
    return out

  def sample_images(self) -> np.ndarray:
    """uint8 (1, S, S, 3): this shard's first image, centre-cropped."""
    ds = _read(self._builder, self._split).take(1)
    s, r = self.image_size, self.resize_to
    ds = ds.map(_graph_fn(
        lambda ex: augment.eval_image(ex['image'], s, r, crops=1)))
    return next(ds.as_numpy_iterator())[None]


class EvalBatches(_HostShard):
  """This host's rows of fixed-size eval batches; iterable any number of times.

  Hosts read near-equal slices and pad them to the same number of batches, so
  every host runs the same eval steps; padding rows have mask False.
  """

  def __init__(self, data_config, split: str, batch_size: int,
               process_index: int = 0, process_count: int = 1):
    # Without drop_remainder the first num_examples % process_count hosts get
    # one more; each host pads to the largest slice.
    super().__init__(data_config, split, batch_size, process_index,
                     process_count, drop_remainder=False)
    self.crops = data_config.eval_crops
    largest = -(-self.num_examples // process_count)
    self.num_batches = -(-largest // self.local_batch)

  def __len__(self) -> int:
    return self.num_batches

  def dataset(self) -> tf.data.Dataset:
    s, r, crops = self.image_size, self.resize_to, self.crops
    ds = _read(self._builder, self._split, shuffle_files=False,
               read_config=tfds.ReadConfig(try_autocache=False))
    ds = ds.map(_graph_fn(lambda ex: {
        'image': augment.eval_image(ex['image'], s, r, crops),
        'label': tf.cast(ex['label'], tf.int32),
        'mask': tf.constant(True)}), num_parallel_calls=_AUTOTUNE)
    pad = self.num_batches * self.local_batch - self.shard_examples
    blank = tf.nest.map_structure(
        lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(blank).repeat(pad))
    ds = ds.batch(self.local_batch, drop_remainder=True)
    return ds.prefetch(_AUTOTUNE).with_options(_options())

  def __iter__(self):
    try:
      yield from self.dataset().as_numpy_iterator()
    except tf.errors.DataLossError as e:
      raise tfds_source.corrupt(self._builder, self._split, e) from e


def eval_batches(data_config, split: str, batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> EvalBatches:
  """Batches {'image': uint8 (local_batch, S, S, 3), or (local_batch, 10, S, S,
  3) for config.data.eval_crops=10, 'label': int32, 'mask': bool} of `split`."""
  return EvalBatches(data_config, split, batch_size, process_index,
                     process_count)
