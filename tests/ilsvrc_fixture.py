"""A tiny ImageNet in the real ILSVRC2012 download layout, for offline tests.

`ILSVRC2012_img_train.tar` holds one tar per synset (`n01440764.tar`) of
`n01440764_<k>.JPEG` files; `ILSVRC2012_img_val.tar` holds
`ILSVRC2012_val_<8 digits>.JPEG` files whose labels TFDS takes from its own
validation_labels.txt (sorted file names zipped with that file's lines). The
test tar is optional for TFDS's builder and is not written.

Every image is one flat colour that identifies it (see `colour`), in its own
size, so a test can tell which example a pipeline row came from after resizing
and cropping; JPEG keeps a flat colour to within a few levels.
"""
import io
import pathlib
import tarfile

import numpy as np
from PIL import Image

# Real synsets (TFDS labels 0, 151 and 909), so labels resolve through TFDS's
# labels.txt rather than through anything this fixture says.
TRAIN_SYNSETS = ('n01440764', 'n02085620', 'n04596742')
IMAGES_PER_SYNSET = 4
NUM_VAL = 5
# (height, width): landscape, portrait and square, so resizing is exercised.
SIZES = ((48, 64), (72, 40), (50, 50), (40, 90))


def colour(index: int, val: bool = False) -> tuple:
  """The RGB of train (or val) image `index`; the red level encodes index."""
  return (10 + 18 * index, 200 if val else 60, 128)


def identify(image: np.ndarray) -> int:
  """The index whose colour is the mean of `image` (H, W, 3)."""
  return int(round((image[..., 0].astype(np.float64).mean() - 10) / 18))


def _jpeg(rgb, size) -> bytes:
  buf = io.BytesIO()
  Image.new('RGB', (size[1], size[0]), rgb).save(buf, 'JPEG', quality=95)
  return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def train_files() -> list:
  """[(synset, file name, train index)] in the order they are written."""
  out = []
  for c, synset in enumerate(TRAIN_SYNSETS):
    for k in range(IMAGES_PER_SYNSET):
      out.append((synset, f'{synset}_{k + 1}.JPEG', c * IMAGES_PER_SYNSET + k))
  return out


def _write_tars(manual_dir, train: dict, val: list) -> pathlib.Path:
  """train: {synset: [(file name, JPEG bytes)]}; val: [(file name, bytes)]."""
  manual_dir = pathlib.Path(manual_dir)
  manual_dir.mkdir(parents=True, exist_ok=True)
  with tarfile.open(manual_dir / 'ILSVRC2012_img_train.tar', 'w') as outer:
    for synset, files in train.items():
      buf = io.BytesIO()
      with tarfile.open(fileobj=buf, mode='w') as tar:
        for fname, data in files:
          _add(tar, fname, data)
      _add(outer, f'{synset}.tar', buf.getvalue())
  with tarfile.open(manual_dir / 'ILSVRC2012_img_val.tar', 'w') as tar:
    for fname, data in val:
      _add(tar, fname, data)
  return manual_dir


def _val_name(i: int) -> str:
  return f'ILSVRC2012_val_{i + 1:08d}.JPEG'


def write(manual_dir) -> pathlib.Path:
  """Writes the tiny test set's two tars into `manual_dir` (created)."""
  train = {}
  for synset, fname, index in train_files():
    train.setdefault(synset, []).append(
        (fname, _jpeg(colour(index), SIZES[index % len(SIZES)])))
  val = [(_val_name(i), _jpeg(colour(i, val=True), SIZES[(i + 1) % len(SIZES)]))
         for i in range(NUM_VAL)]
  return _write_tars(manual_dir, train, val)


def _photo(rng, size) -> bytes:
  """A JPEG with photo-like statistics: smooth shapes plus fine grain, at
  quality 90, so decoding costs about what an ImageNet photo's does."""
  low = rng.integers(0, 256, (6, 8, 3), np.uint8)
  image = Image.fromarray(low).resize((size[1], size[0]), Image.BICUBIC)
  grain = rng.normal(0, 12, (size[0], size[1], 3))
  pixels = np.clip(np.asarray(image, np.float64) + grain, 0, 255)
  buf = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(buf, 'JPEG', quality=90)
  return buf.getvalue()


# The most common ILSVRC2012 sizes (most photos are 500 px on the long side).
PHOTO_SIZES = ((375, 500), (333, 500), (500, 375), (500, 500), (400, 500))


def write_photos(manual_dir, images_per_synset: int,
                 num_val: int = 50) -> pathlib.Path:
  """ILSVRC-layout tars of ImageNet-sized textured images, for benchmarks."""
  rng = np.random.default_rng(0)
  size = lambda i: PHOTO_SIZES[i % len(PHOTO_SIZES)]
  train = {synset: [(f'{synset}_{k + 1}.JPEG', _photo(rng, size(k)))
                    for k in range(images_per_synset)]
           for synset in TRAIN_SYNSETS}
  val = [(_val_name(i), _photo(rng, size(i))) for i in range(num_val)]
  return _write_tars(manual_dir, train, val)
