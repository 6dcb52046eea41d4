"""TFDS builder 'mnist_multidigit': house-number-like images composed from real
MNIST digits, so the street-number experiment (Goodfellow et al. 2013) runs
anywhere with the four MNIST files and no network.

Each image holds a number of 1 to 5 MNIST digits in one colour, with jittered
scale, spacing and baseline, on a background of another colour with a
gradient, noise and clutter (fragments of other digits cut by the frame, like
neighbouring signs). It is framed as the paper frames SVHN (section 5.1): the
union of the digit boxes expanded by 30%, here also shifted and scaled at
random (a detector's imperfect box), then resized to 64x64 ignoring the aspect
ratio, so long numbers come out narrow as in SVHN. Training takes random 54x54
crops of it, evaluation the centre one (config.data.augment).

Splits draw on disjoint MNIST digits: train on MNIST train[:55000],
validation on train[55000:], test on MNIST test. Example i of a split is a
function of (split, i) only. Features are those of svhn_full: 'image',
'length' and 'digits' (-1 where absent).
"""
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from research.data.idx import read_idx

SIZE = 64
MAX_DIGITS = 5
MANUAL_FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'
# split -> (MNIST file prefix, digit range, examples in the default config).
SPLITS = {'train': ('train', (0, 55_000), 60_000),
          'validation': ('train', (55_000, 60_000), 5_000),
          'test': ('t10k', (0, 10_000), 10_000)}
SPLIT_SEEDS = {'train': 0, 'validation': 1, 'test': 2}


def _ink(digit: np.ndarray) -> np.ndarray:
  """The digit cropped to the rows and columns that hold ink."""
  rows, cols = np.nonzero(digit > 30)
  return digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _resized(a: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(Image.fromarray(a.astype(np.float32), mode='F').resize(
      (max(1, width), max(1, height)), Image.BILINEAR))


def _glyph(digit: np.ndarray, height: int) -> np.ndarray:
  """An MNIST digit's ink as an alpha mask in [0, 1] of the given height."""
  ink = _ink(digit)
  width = max(2, round(ink.shape[1] * height / ink.shape[0]))
  return np.clip(_resized(ink, height, width) / 255.0, 0.0, 1.0)


def _colours(rng):
  """Foreground and background RGB in [0, 1], differing in brightness by at
  least 0.35 so the number stays legible."""
  while True:
    fg, bg = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    if abs(fg.mean() - bg.mean()) >= 0.35:
      return fg, bg


def compose(digits: list, clutter: list, rng) -> np.ndarray:
  """A (64, 64, 3) uint8 image of the number written with `digits` (28x28
  MNIST images), `clutter` digits placed across the frame's edges."""
  height = int(rng.integers(22, 34))
  glyphs = [_glyph(d, int(height * rng.uniform(0.85, 1.15))) for d in digits]
  gaps = rng.integers(-1, 6, len(glyphs))
  drops = rng.integers(0, 4, len(glyphs))
  number_w = sum(g.shape[1] for g in glyphs) + int(gaps[1:].sum())
  number_h = max(g.shape[0] + d for g, d in zip(glyphs, drops))
  # The frame: the number's box expanded 30% (section 5.1), then jittered.
  frame_w = max(number_w * 1.3 * rng.uniform(0.9, 1.2), number_h * 0.8)
  frame_h = number_h * 1.3 * rng.uniform(0.9, 1.2)
  fw, fh = int(np.ceil(frame_w)), int(np.ceil(frame_h))
  x0 = int(round((fw - number_w) / 2 + rng.uniform(-0.08, 0.08) * fw))
  y0 = int(round((fh - number_h) / 2 + rng.uniform(-0.08, 0.08) * fh))
  x0, y0 = np.clip(x0, 0, fw - number_w), np.clip(y0, 0, fh - number_h)

  alpha = np.zeros((fh, fw), np.float32)
  x = x0
  for glyph, gap, drop in zip(glyphs, np.concatenate([[0], gaps[1:]]), drops):
    x += int(gap)
    h, w = glyph.shape
    region = alpha[y0 + drop:y0 + drop + h, x:x + w]
    region[...] = np.maximum(region, glyph[:region.shape[0], :region.shape[1]])
    x += w

  fg, bg = _colours(rng)
  ys, xs = np.mgrid[0:fh, 0:fw] / max(fh, fw)
  tilt = rng.normal(0, 0.15, (2, 3))
  image = bg + ys[..., None] * tilt[0] + xs[..., None] * tilt[1]
  for digit in clutter:  # cut by the left or right edge of the frame
    glyph = _glyph(digit, int(height * rng.uniform(0.7, 1.3)))
    h, w = glyph.shape
    left = int(rng.integers(1 - w, 1) if rng.random() < 0.5 else
               rng.integers(fw - max(1, w // 2), fw))
    top = int(rng.integers(-h // 3, max(1, fh - 2 * h // 3)))
    canvas = np.zeros((fh + 2 * h, fw + 2 * w), np.float32)
    canvas[top + h:top + 2 * h, left + w:left + 2 * w] = glyph
    clutter_alpha = canvas[h:h + fh, w:w + fw] * rng.uniform(0.3, 0.8)
    colour = rng.uniform(0, 1, 3)
    image = image * (1 - clutter_alpha[..., None]) + colour * clutter_alpha[
        ..., None]
  image = image * (1 - alpha[..., None]) + fg * alpha[..., None]
  image += rng.normal(0, rng.uniform(0, 0.06), image.shape)
  image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
  return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR))


def example(images: np.ndarray, labels: np.ndarray, rng) -> dict:
  """One composed number from a pool of MNIST digits."""
  n = int(rng.integers(1, MAX_DIGITS + 1))
  picks = rng.integers(0, len(labels), n + 3)
  clutter = [images[i] for i in picks[n:n + int(rng.integers(0, 4))]]
  digits = np.full(MAX_DIGITS, -1, np.int32)
  digits[:n] = labels[picks[:n]]
  return {'image': compose([images[i] for i in picks[:n]], clutter, rng),
          'length': np.int32(n), 'digits': digits}


class MnistMultidigitConfig(tfds.core.BuilderConfig):
  """How many numbers each split holds."""

  def __init__(self, *, sizes: dict, **kwargs):
    super().__init__(**kwargs)
    self.sizes = sizes


class MnistMultidigit(tfds.core.GeneratorBasedBuilder):
  """Multi-digit numbers composed from MNIST (see the module docstring)."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_FILES = MANUAL_FILES
  BUILDER_CONFIGS = [
      MnistMultidigitConfig(
          name='default', description='60,000 / 5,000 / 10,000 numbers.',
          sizes={split: n for split, (_, _, n) in SPLITS.items()}),
      # The size of SVHN's train + extra (33,402 + 202,353), which the paper
      # trains on (section 5.1); the default's 60,000 are its first numbers.
      MnistMultidigitConfig(
          name='paper', description='235,755 / 5,000 / 10,000 numbers.',
          sizes={'train': 235_755, 'validation': 5_000, 'test': 10_000}),
      MnistMultidigitConfig(
          name='small', description='2,000 / 500 / 500 numbers, for tests and '
          'smoke runs.', sizes={'train': 2_000, 'validation': 500,
                                'test': 500}),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(SIZE, SIZE, 3)),
            'length': np.int32,
            'digits': tfds.features.Tensor(shape=(MAX_DIGITS,),
                                           dtype=np.int32),
        }),
        homepage='https://arxiv.org/abs/1312.6082',
    )

  def _split_generators(self, dl_manager):
    # MNIST's checksums are registered (checksums.tsv beside this file), so
    # TFDS takes the files from manual_dir when they are there, verified.
    paths = dl_manager.download({f: MNIST_URL + f for f in MANUAL_FILES})
    return {split: self._generate_examples(split, paths) for split in SPLITS}

  def _generate_examples(self, split, paths):
    prefix, (lo, hi), _ = SPLITS[split]
    images = read_idx(str(paths[f'{prefix}-images-idx3-ubyte.gz']))[lo:hi]
    labels = read_idx(str(paths[f'{prefix}-labels-idx1-ubyte.gz']))[lo:hi]
    for i in range(self.builder_config.sizes[split]):
      rng = np.random.default_rng([SPLIT_SEEDS[split], i])
      yield i, example(images, labels.astype(np.int32), rng)
