"""Datasets by name, served as per-host numpy batches.

`create` picks the source: big sets (ImageNet, config.data.streaming) stream
through tf.data with the papers' augmentation (research/data/streaming.py);
small ones (MNIST, the stoplight) are held in memory, as below. Each epoch is a permutation
drawn from (seed, epoch), so the data order depends only on the step: a resumed
run sees exactly the batches an uninterrupted one would. Batches are gathered
with numpy on the host (XLA's CPU gather is slower than the training step itself)
and a chunk of K steps goes to the device as one (K, batch, ...) array.
"""
import copy

import numpy as np

from research import configlib
from research.data import stoplight
from research.data import tfds_source

IN_MEMORY = {'stoplight': stoplight.load}


def create(data_config, batch_size: int, eval_batch_size: int, seed: int,
           process_index: int = 0, process_count: int = 1,
           train: bool = True, evals: dict | None = None):
  """(training batches, {eval name: eval source}); without `train` (a run
  that only evaluates) the training batches are None and the training split
  is not read. `evals`: {name: (split, crops)} (research/evaluators.py);
  None: config.data.eval_splits, each with config.data.eval_crops.

  Training batches have `steps_per_epoch`, `sample_images()` and
  `chunk(first_step, num_steps)` -> this host's rows of those steps' batches,
  (num_steps, batch_size // process_count, ...), a function of the step only.
  An eval source (InMemoryEval or StreamedEval) gives `chunks(place)`:
  chunks (N, eval_batch_size // process_count, ...) with a 'mask' that is
  False on padding, each passed through `place` (host arrays -> device
  arrays) before it is yielded.
  """
  if evals is None:
    evals = {name: (split, data_config.eval_crops)
             for name, split in data_config.eval_splits.items()}
  if data_config.prepared:
    from research.data import prepared  # pylint: disable=g-import-not-at-top
    batches = (prepared.PreparedTrainBatches(data_config, batch_size, seed,
                                             process_index, process_count)
               if train else None)
    sources = {name: prepared.PreparedEval(
        _with_crops(data_config, crops), split, eval_batch_size,
        process_index, process_count) for name, (split, crops) in evals.items()}
    return batches, sources
  if data_config.streaming:
    from research.data import streaming  # pylint: disable=g-import-not-at-top
    batches = (streaming.StreamedTrainBatches(data_config, batch_size, seed,
                                              process_index, process_count)
               if train else None)
    sources = {name: StreamedEval(streaming.eval_batches(
        _with_crops(data_config, crops), split, eval_batch_size,
        process_index, process_count)) for name, (split, crops) in evals.items()}
    return batches, sources
  for name, (_, crops) in evals.items():
    if crops != 1:
      raise configlib.ConfigError(
          f'The evaluation {name!r} takes {crops} crops of each image; only '
          'streamed or prepared ImageNet has them (config.data.streaming or '
          'config.data.prepared). Evaluate the centre crop: type '
          "'classification'.")
  splits = load(data_config, process_index, process_count, train,
                {name: split for name, (split, _) in evals.items()})
  crop = ((data_config.crop_size or data_config.image_size)
          if data_config.augment == 'random_crop' else 0)
  batches = (TrainBatches(splits.pop('train'), batch_size, seed,
                          process_index, process_count, crop)
             if train else None)
  evals = {name: InMemoryEval(eval_batches(center_crop(arrays, crop),
                                            eval_batch_size, process_index,
                                            process_count))
           for name, arrays in splits.items()}
  return batches, evals


class InMemoryEval:
  """A small split as one chunk, placed on the devices once and kept there
  between evaluations."""

  def __init__(self, chunk: dict):
    self.chunk, self._placed = chunk, None

  def chunks(self, place=lambda x: x):
    if self._placed is None:
      self._placed = place(self.chunk)
    yield self._placed

  def first_image(self) -> np.ndarray:
    return self.chunk['image'][0, :1]


class StreamedEval:
  """A streamed split (research/data/streaming.py), one batch a chunk, read
  again at every evaluation."""

  def __init__(self, batches):
    self._batches = batches

  def chunks(self, place=lambda x: x):
    for batch in self._batches:
      yield place({k: v[None] for k, v in batch.items()})

  def first_image(self) -> np.ndarray:
    """The first image; its first crop where images come as several
    (AlexNet's 10-crop test)."""
    image = next(iter(self._batches))['image'][0]
    return (image[:1] if image.ndim == 4 else image[None])


def _check_crop(images: np.ndarray, crop: int):
  if crop > min(images.shape[1:3]):
    raise configlib.ConfigError(
        f'config.data.image_size={crop} is larger than the stored '
        f'{images.shape[1]}x{images.shape[2]} images it is cropped from; '
        'lower --config.data.image_size.')


def center_crop(arrays: dict, crop: int) -> dict:
  """The central crop x crop window of every image (evaluation); 0: as is."""
  if not crop:
    return arrays
  images = arrays['image']
  _check_crop(images, crop)
  top, left = (images.shape[1] - crop) // 2, (images.shape[2] - crop) // 2
  return {**arrays, 'image': images[:, top:top + crop, left:left + crop]}


def _with_crops(data_config, crops: int):
  data_config = data_config.copy_and_resolve_references()
  data_config.eval_crops = crops
  return data_config


def load(data_config, process_index: int = 0, process_count: int = 1,
         train: bool = True, eval_splits: dict | None = None) -> dict:
  """{'train': arrays, <eval name>: arrays, ...}, arrays = {'image','label'}:
  `eval_splits` ({name: split}; None: config.data.eval_splits).

  Whole splits on every process, each process reading only its shard of the
  files (research/data/tfds_source.py)."""
  specs = {**({'train': data_config.train_split} if train else {}),
           **(data_config.eval_splits if eval_splits is None else eval_splits)}
  if data_config.name in IN_MEMORY:
    arrays = IN_MEMORY[data_config.name]()
    return {key: arrays for key in specs}
  return tfds_source.load_splits(data_config, specs, process_index,
                                 process_count)


class TrainBatches:
  """Shuffled fixed-size batches; this host's rows of each global batch.

  With `crop`, each image is a random crop x crop window of the stored one
  (Goodfellow et al. 2013, section 5.1: 54x54 of 64x64), its position a
  function of (seed, step, row) like the data order.
  """

  def __init__(self, arrays: dict, batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1, crop: int = 0):
    if crop:
      _check_crop(arrays['image'], crop)
    self.crop = crop
    self.arrays = arrays
    self.num_examples = len(arrays['label'])
    self.batch_size = batch_size
    self.steps_per_epoch = self.num_examples // batch_size
    if self.steps_per_epoch == 0:
      raise configlib.ConfigError(
          f'config.batch_size={batch_size} exceeds the {self.num_examples} '
          'training examples; lower --config.batch_size or use a larger '
          '--config.data.train_split.')
    self.seed = seed
    local = batch_size // process_count
    self.rows = slice(process_index * local, (process_index + 1) * local)
    self._perm = (None, None)

  def with_seed(self, seed: int) -> 'TrainBatches':
    """The same examples (not copied) in the order and crops of `seed`."""
    other = copy.copy(self)
    other.seed, other._perm = seed, (None, None)  # pylint: disable=protected-access
    return other

  def permutation(self, epoch: int) -> np.ndarray:
    if self._perm[0] != epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._perm = (epoch, rng.permutation(self.num_examples))
    return self._perm[1]

  def indices(self, first_step: int, num_steps: int) -> np.ndarray:
    """(num_steps, batch_size) example indices of steps first_step, ...; the
    remainder of an epoch that does not fill a batch is dropped."""
    out = np.empty((num_steps, self.batch_size), np.int64)
    for i, step in enumerate(range(first_step, first_step + num_steps)):
      epoch, pos = divmod(step, self.steps_per_epoch)
      out[i] = self.permutation(epoch)[pos * self.batch_size:
                                       (pos + 1) * self.batch_size]
    return out

  def sample_images(self) -> np.ndarray:
    return center_crop({'image': self.arrays['image'][:1]}, self.crop)['image']

  def chunk(self, first_step: int, num_steps: int) -> dict:
    idx = self.indices(first_step, num_steps)[:, self.rows]
    out = {k: np.take(v, idx, axis=0) for k, v in self.arrays.items()}
    if self.crop:
      out['image'] = self._random_crops(out['image'], first_step)
    return out

  def _random_crops(self, images: np.ndarray, first_step: int) -> np.ndarray:
    steps, rows = images.shape[:2]
    c = self.crop
    out = np.empty((steps, rows, c, c) + images.shape[4:], images.dtype)
    for s in range(steps):
      # Drawn for the whole global batch, so every host agrees on the crops.
      rng = np.random.default_rng([self.seed, first_step + s, 1])
      tops = rng.integers(0, images.shape[2] - c + 1, self.batch_size)
      lefts = rng.integers(0, images.shape[3] - c + 1, self.batch_size)
      for r, (top, left) in enumerate(zip(tops[self.rows], lefts[self.rows])):
        out[s, r] = images[s, r, top:top + c, left:left + c]
    return out


def eval_batches(arrays: dict, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> dict:
  """The whole split as (num_batches, batch, ...) padded with masked rows."""
  n = len(arrays['label'])
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  out = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
         for k, v in arrays.items()}
  out['mask'] = np.arange(n + pad) < n
  local = batch_size // process_count
  rows = slice(process_index * local, (process_index + 1) * local)
  return {k: v.reshape((num_batches, batch_size) + v.shape[1:])[:, rows]
          for k, v in out.items()}
