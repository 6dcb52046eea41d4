r"""ImageNet prepared once, cheap every epoch (Krizhevsky et al. 2012,
section 2: every image rescaled to a shorter side of 256 and cut to its
central 256x256 square, once).

  python -m research.data.prepared --data_dir=DIR [--manual_dir=TARS] \
      [--encoding=raw|jpeg] [--jpeg_quality=95] [--workers=N]

builds `imagenet2012_256` in DIR from the prepared TFDS `imagenet2012` there
(prepared first from the ILSVRC tars in --manual_dir if need be): a TFDS
dataset in ArrayRecord files, one per source shard, each written aside and
renamed when complete by one of N worker processes, so an interrupted build
resumes where it stopped; it logs its progress and how long is left. The
squares are the streamed pipeline's own (research/data/augment.py: the same
antialiased resize, rounded to uint8), stored as raw uint8 (no decoding at
all; 196,608 bytes an image) or as JPEG.

Training on it (`config.data.prepared=True`, configs/alexnet.py:prepared)
reads examples by index (ArrayRecord is random access): each epoch is a
global permutation drawn from (seed, epoch), as for in-memory data, each host
reads only its own rows of every global batch, and each row's crop, flip and
PCA colour shift are drawn from (seed, step, row). So the batches are a
function of the step alone, the same for any number of processes, and a
resumed run sees exactly those of an uninterrupted one. Evaluation takes the
centre crop or AlexNet's ten (section 4.1). The same store serves GoogLeNet's
224 crops.
"""
import concurrent.futures
import io
import multiprocessing
import os
import time

from absl import logging
import numpy as np

from research import configlib
from research.data import tfds_source

NAME = 'imagenet2012_256'
SIDE = 256
ENCODINGS = ('raw', 'jpeg')
SPLITS = ('train', 'validation')
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)  # as research/data/augment.py
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
PCA_STD = 0.1


# --------------------------------------------------------------- building

def features(encoding: str, label):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  configlib.choose('store encoding', encoding, ENCODINGS)
  image = (tfds.features.Tensor(shape=(SIDE, SIDE, 3), dtype=np.uint8,
                                encoding=tfds.features.Encoding.BYTES)
           if encoding == 'raw' else
           tfds.features.Image(shape=(SIDE, SIDE, 3), encoding_format='jpeg'))
  return tfds.features.FeaturesDict({'image': image, 'label': label})


def _shard_path(out_dir, split: str, shard: int, shards: int) -> str:
  return os.path.join(out_dir, f'{NAME}-{split}.array_record-'
                               f'{shard:05d}-of-{shards:05d}')


def _write_shard(job) -> int:
  """In a worker process: source examples lo..hi of `split` as one
  ArrayRecord file, written aside and renamed when complete."""
  source_dir, split, lo, hi, path, encoding, quality = job
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  from research.data import augment  # pylint: disable=g-import-not-at-top
  source = tfds.builder('imagenet2012', data_dir=source_dir)
  spec = features(encoding, source.info.features['label'])
  ds = source.as_dataset(split=f'{split}[{lo}:{hi}]', shuffle_files=False,
                         decoders={'image': tfds.decode.SkipDecoding()})
  square = lambda e: augment.to_uint8(augment.resize_and_center_crop(
      augment.decode(e), SIDE))
  ds = ds.map(tf.autograph.experimental.do_not_convert(
      lambda ex: {'image': square(ex['image']), 'label': ex['label']}))
  aside = path + '.incomplete'
  # One record a group: random access. Uncompressed: zstd, ArrayRecord's
  # default, gains nothing on pixels or JPEG and costs a raw image's read a
  # third of its CPU time.
  writer = array_record_module.ArrayRecordWriter(aside,
                                                 'uncompressed,group_size:1')
  count = 0
  for ex in tfds.as_numpy(ds):
    image = ex['image']
    if encoding == 'jpeg':
      from PIL import Image  # pylint: disable=g-import-not-at-top
      buf = io.BytesIO()
      Image.fromarray(image).save(buf, 'JPEG', quality=quality)
      image = buf.getvalue()
    writer.write(spec.serialize_example({'image': image,
                                         'label': ex['label']}))
    count += 1
  writer.close()
  os.replace(aside, path)
  return count


def build(data_dir: str, manual_dir: str | None = None, encoding: str = 'raw',
          jpeg_quality: int = 95, workers: int | None = None,
          splits=SPLITS, log_every_s: float = 30.0,
          out_data_dir: str | None = None) -> str:
  """Builds (or finishes building) the store of data_dir's imagenet2012 in
  out_data_dir (default data_dir); returns its folder. Idempotent: complete
  shards are kept, the rest written."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  source = tfds_source.prepared_builder(ml_collections.ConfigDict({
      'name': 'imagenet2012', 'data_dir': data_dir, 'manual_dir': manual_dir}))
  out_dir = os.path.join(out_data_dir or data_dir, NAME, '1.0.0')
  os.makedirs(out_dir, exist_ok=True)
  jobs, lengths = [], {}
  for split in splits:
    if split not in source.info.splits:
      continue
    shard_lengths = source.info.splits[split].shard_lengths
    lengths[split] = shard_lengths
    edges = np.concatenate([[0], np.cumsum(shard_lengths)]).astype(int)
    for i in range(len(shard_lengths)):
      path = _shard_path(out_dir, split, i, len(shard_lengths))
      if not os.path.exists(path):
        jobs.append((source.data_dir_root, split, edges[i], edges[i + 1],
                     path, encoding, jpeg_quality))
  total = sum(hi - lo for _, _, lo, hi, *_ in jobs)
  workers = workers or max(1, len(os.sched_getaffinity(0)))
  logging.info('%s: %d of %d shards to write (%s images) with %d workers.',
               out_dir, len(jobs), sum(map(len, lengths.values())),
               f'{total:,}', workers)
  start, done, last_log = time.time(), 0, 0.0
  context = multiprocessing.get_context('spawn')  # TensorFlow and fork mix badly
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    for count in pool.map(_write_shard, jobs):
      done += count
      elapsed = time.time() - start
      if elapsed - last_log >= log_every_s or done == total:
        last_log = elapsed
        rate = done / max(elapsed, 1e-9)
        logging.info('%s of %s images (%.0f a second): about %.0f min left.',
                     f'{done:,}', f'{total:,}', rate,
                     (total - done) / max(rate, 1e-9) / 60)
  spec = features(encoding, source.info.features['label'])
  template = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}'
  split_infos = [tfds.core.SplitInfo(
      name=split, shard_lengths=list(map(int, shard_lengths)),
      num_bytes=sum(os.path.getsize(_shard_path(out_dir, split, i,
                                                len(shard_lengths)))
                    for i in range(len(shard_lengths))))
                 for split, shard_lengths in lengths.items()]
  tfds.folder_dataset.write_metadata(
      data_dir=out_dir, features=spec, split_infos=split_infos,
      filename_template=template, check_data=False,
      description='ImageNet squares of 256 (research/data/prepared.py)')
  return out_dir


# ---------------------------------------------------------------- reading

class _Store:
  """The prepared split, random access: rows by index, as uint8 squares."""

  def __init__(self, data_config, split: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    directory = os.path.join(
        os.path.expanduser(data_config.data_dir or tfds.core.constants.DATA_DIR),
        NAME, '1.0.0')
    if not os.path.exists(os.path.join(directory, 'dataset_info.json')):
      raise tfds_source.DataError(
          f'No prepared ImageNet store in {directory}: build it with python '
          f'-m research.data.prepared --data_dir={data_config.data_dir} '
          '--manual_dir=THE_ILSVRC_TARS (once; it resumes if stopped).')
    builder = tfds.builder_from_directory(directory)
    try:
      self.source = builder.as_data_source(split=split)
    except (ValueError, KeyError) as e:
      raise tfds_source.DataError(f'Bad split {split!r} for the prepared '
                                  f'store in {directory}: {e}') from e
    self.size = len(self.source)

  def rows(self, indices) -> tuple[np.ndarray, np.ndarray]:
    records = self.source.__getitems__(list(map(int, indices)))
    images = np.stack([r['image'] for r in records])
    labels = np.asarray([r['label'] for r in records], np.int32)
    return images, labels


def _augment(images, labels, seed: int, step: int, rows, size: int,
             augment: str, batch_size: int) -> dict:
  """Crops of uint8 squares, and with 'alexnet' each row's flip and PCA
  colour shift, all drawn from (seed, step, its row of the global batch).
  The host only copies the crops; the compiled step flips and shifts them
  (prepare.augment_on_device), where they cost next to nothing."""
  rng = np.random.default_rng([seed, step, 2])
  tops = rng.integers(0, SIDE - size + 1, batch_size)[rows]
  lefts = rng.integers(0, SIDE - size + 1, batch_size)[rows]
  flips = rng.random(batch_size)[rows] < 0.5
  shifts = (rng.normal(0, PCA_STD, (batch_size, 3)) * PCA_EIGVAL
            @ np.asarray(PCA_EIGVEC).T * 255.0)[rows]
  if augment == 'none':
    tops[:] = lefts[:] = (SIDE - size) // 2
  out = np.empty((len(images), size, size, 3), np.uint8)
  for i, image in enumerate(images):
    out[i] = image[tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]
  batch = {'image': out, 'label': labels}
  if augment != 'none':
    batch['flip'] = flips
  if augment == 'alexnet':
    batch['pixel_shift'] = np.round(shifts).astype(np.int16)
  return batch


class PreparedTrainBatches:
  """This host's rows of each global training batch, a function of the
  step (see the module docstring)."""

  def __init__(self, data_config, batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1):
    configlib.choose('augmentation of the prepared store', data_config.augment,
                     ('none', 'crop_flip', 'alexnet'))
    self.store = _Store(data_config, data_config.train_split)
    self.num_examples = self.store.size
    self.batch_size, self.seed = batch_size, seed
    self.image_size = data_config.image_size
    self.augment = data_config.augment
    self.steps_per_epoch = self.num_examples // batch_size
    if self.steps_per_epoch == 0:
      raise configlib.ConfigError(
          f'config.batch_size={batch_size} exceeds the {self.num_examples} '
          'training examples; lower --config.batch_size.')
    self.local_batch = local = batch_size // process_count
    self.rows = np.arange(process_index * local, (process_index + 1) * local)
    self._perm = (None, None)

  def _indices(self, step: int) -> np.ndarray:
    epoch, pos = divmod(step, self.steps_per_epoch)
    if self._perm[0] != epoch:
      self._perm = (epoch, np.random.default_rng(
          [self.seed, epoch]).permutation(self.num_examples))
    return self._perm[1][pos * self.batch_size:(pos + 1) * self.batch_size]

  def chunk(self, first_step: int, num_steps: int) -> dict:
    batches = []
    for step in range(first_step, first_step + num_steps):
      squares, label = self.store.rows(self._indices(step)[self.rows])
      batches.append(_augment(squares, label, self.seed, step, self.rows,
                              self.image_size, self.augment, self.batch_size))
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}

  def sample_images(self) -> np.ndarray:
    squares, _ = self.store.rows([0])
    off = (SIDE - self.image_size) // 2
    return squares[:, off:off + self.image_size, off:off + self.image_size]


def ten_crop(square: np.ndarray, size: int) -> np.ndarray:
  """(10, size, size, 3): corners, centre, and their mirrors (section 4.1;
  augment.ten_crop's order)."""
  far, mid = SIDE - size, (SIDE - size) // 2
  crops = np.stack([square[:size, :size], square[:size, far:],
                    square[far:, :size], square[far:, far:],
                    square[mid:mid + size, mid:mid + size]])
  return np.concatenate([crops, crops[:, :, ::-1]])


class PreparedEval:
  """An eval split of the store: padded batches of this host's rows, the
  centre crop or ten; the eval-source interface of research/data/pipeline.py
  (chunks(place), first_image())."""

  def __init__(self, data_config, split: str, batch_size: int,
               process_index: int = 0, process_count: int = 1):
    self.store = _Store(data_config, split)
    self.size, self.crops = data_config.image_size, data_config.eval_crops
    self.batch_size = batch_size
    local = batch_size // process_count
    self.rows = slice(process_index * local, (process_index + 1) * local)

  def _view(self, square):
    if self.crops == 10:
      return ten_crop(square, self.size)
    off = (SIDE - self.size) // 2
    return square[off:off + self.size, off:off + self.size]

  def chunks(self, place=lambda x: x):
    for start in range(0, self.store.size, self.batch_size):
      index = np.arange(start, start + self.batch_size)[self.rows]
      valid = index < self.store.size
      squares, labels = self.store.rows(np.where(valid, index, 0))
      batch = {'image': np.stack([self._view(s) for s in squares]),
               'label': np.where(valid, labels, 0).astype(np.int32),
               'mask': valid}
      yield place({k: v[None] for k, v in batch.items()})

  def first_image(self) -> np.ndarray:
    squares, _ = self.store.rows([0])
    return self._view(squares[0])[:1] if self.crops == 10 else (
        self._view(squares[0])[None])


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  print(build(f.data_dir, f.manual_dir, f.encoding, f.jpeg_quality,
              f.workers or None))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir: the prepared '
                      'imagenet2012 is read, and the store written, there.',
                      required=True)
  flags.DEFINE_string('manual_dir', None, 'The ILSVRC tars, if imagenet2012 '
                      'is not prepared yet.')
  flags.DEFINE_enum('encoding', 'raw', list(ENCODINGS), 'raw uint8 or JPEG.')
  flags.DEFINE_integer('jpeg_quality', 95, 'With --encoding=jpeg.')
  flags.DEFINE_integer('workers', 0, 'Worker processes; 0: one per core.')
  app.run(main)
