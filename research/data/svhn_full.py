"""TFDS builder: SVHN format 1 (full house-number images), Goodfellow crops.

Goodfellow et al. 2013, "Multi-digit Number Recognition from Street View
Imagery using Deep Convolutional Neural Networks" (arXiv 1312.6082), section
5.1: find the smallest rectangle holding every digit's box, expand it by 30% in
x and in y, crop the image to it and resize the crop to 64x64. The paper then
takes a random 54x54 crop for training (a centred one for evaluation); that
step is NOT done here but by the input pipeline, so that every epoch sees new
crops of the same stored images.

Source: http://ufldl.stanford.edu/housenumbers/ ("format 1"): train.tar.gz,
test.tar.gz and extra.tar.gz, each holding `<split>/N.png` and
`<split>/digitStruct.mat` (MATLAB v7.3, i.e. HDF5, read with h5py). The
archives are read as streams, one image at a time: extra.tar.gz is 1.3 GB.

Preparing offline: put the three archives, under their original names, in
`tfds.download.DownloadConfig(manual_dir=...)`. TFDS itself would ignore them
there, because it matches manual files only against registered checksums,
which this builder has none of; so `_split_generators` looks in manual_dir
first and downloads only when none of the files is there, after checking the
host answers (offline, TFDS's HTTP retries take minutes to fail).

Each example, keyed by its file name ('1.png'):
  image:  (64, 64, 3) uint8, the expanded digit box resized (aspect ignored).
  length: int32, the true number of digits; a few images have more than 5,
          which the paper's model classifies as "more than five".
  digits: (5,) int32, the first five digits 0..9 (SVHN's label 10 is the
          digit 0), -1 where the number has fewer.
  box:    (4,) float32, the crop (left, top, right, bottom) in pixels of the
          original image, after expansion, rounding outward and clipping.
"""
import contextlib
import io
import math
import os
import shutil
import tempfile
import urllib.parse

import h5py
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from research.data import reachability

URL = 'http://ufldl.stanford.edu/housenumbers/'
SPLITS = ('train', 'test', 'extra')
IMAGE_SIZE = 64
MAX_DIGITS = 5
EXPAND = 0.3
_FIELDS = ('left', 'top', 'width', 'height', 'label')

_CITATION = """\
@article{goodfellow2013multidigit,
  title={Multi-digit Number Recognition from Street View Imagery using Deep
         Convolutional Neural Networks},
  author={Goodfellow, Ian J. and Bulatov, Yaroslav and Ibarz, Julian and
          Arnoud, Sacha and Shet, Vinay},
  journal={arXiv preprint arXiv:1312.6082},
  year={2013}
}
@inproceedings{netzer2011reading,
  title={Reading Digits in Natural Images with Unsupervised Feature Learning},
  author={Netzer, Yuval and Wang, Tao and Coates, Adam and Bissacco, Alessandro
          and Wu, Bo and Ng, Andrew Y.},
  booktitle={NIPS Workshop on Deep Learning and Unsupervised Feature Learning},
  year={2011}
}
"""


# ---------------------------------------------------------------- digitStruct


def _values(mat, dataset) -> np.ndarray:
  """One bbox field as floats: stored inline when an image has one digit, as
  references to (1, 1) datasets when it has several (MATLAB's cell layout)."""
  data = dataset[()]
  if h5py.check_dtype(ref=dataset.dtype) is None:
    return np.asarray(data, np.float64).ravel()
  return np.array([mat[ref][()].item() for ref in data.ravel()], np.float64)


def _name(mat, ref) -> str:
  """A MATLAB char array: uint16 code units."""
  return ''.join(map(chr, mat[ref][()].ravel()))


def read_digit_struct(path_or_fileobj) -> list:
  """[(file name, {'left','top','width','height','label': float arrays})].

  One entry per image, in file order; each array has one value per digit.
  Accepts a path or a seekable binary file object.
  """
  out = []
  with h5py.File(path_or_fileobj, 'r') as mat:
    struct = mat['digitStruct']
    names, boxes = struct['name'][()].ravel(), struct['bbox'][()].ravel()
    for name_ref, box_ref in zip(names, boxes):
      group = mat[box_ref]
      out.append((_name(mat, name_ref),
                  {f: _values(mat, group[f]) for f in _FIELDS}))
  return out


# ---------------------------------------------------------------- preprocessing


def _outward(value: float, rounding) -> int:
  """floor/ceil after rounding to 1e-6, so float error cannot add a pixel:
  14.7 - 11.7 is 2.9999999999999982, whose floor would be 2, not 3."""
  return int(rounding(round(value, 6)))


def crop_box(left, top, width, height, image_width: int, image_height: int,
             expand: float = EXPAND) -> tuple:
  """The paper's crop (left, top, right, bottom) as integer pixel edges.

  The union of the digit boxes (arrays, one entry per digit) grows by
  `expand` of its width and height about its centre, is rounded outward to
  whole pixels (floor the left/top, ceil the right/bottom) and clipped to the
  image; it keeps at least one pixel.
  """
  left, top = np.asarray(left, np.float64), np.asarray(top, np.float64)
  right = left + np.asarray(width, np.float64)
  bottom = top + np.asarray(height, np.float64)
  x0, y0, x1, y1 = left.min(), top.min(), right.max(), bottom.max()
  half_w, half_h = (x1 - x0) * (1 + expand) / 2, (y1 - y0) * (1 + expand) / 2
  cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
  out_left = min(max(_outward(cx - half_w, math.floor), 0), image_width - 1)
  out_top = min(max(_outward(cy - half_h, math.floor), 0), image_height - 1)
  out_right = max(min(_outward(cx + half_w, math.ceil), image_width),
                  out_left + 1)
  out_bottom = max(min(_outward(cy + half_h, math.ceil), image_height),
                   out_top + 1)
  return out_left, out_top, out_right, out_bottom


def preprocess(image: np.ndarray, box) -> np.ndarray:
  """(H, W, 3) uint8 -> the `box` crop resized to 64x64 (PIL bilinear)."""
  crop = Image.fromarray(image).crop(tuple(int(v) for v in box))
  crop = crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
  return np.asarray(crop, np.uint8)


def encode_digits(labels) -> tuple:
  """SVHN labels 1..10 -> (length, the first 5 digits 0..9 padded with -1)."""
  labels = np.asarray(labels).astype(np.int64).ravel()
  digits = np.full((MAX_DIGITS,), -1, np.int32)
  first = labels[:MAX_DIGITS] % 10
  digits[:len(first)] = first
  return np.int32(len(labels)), digits


def _example(png: bytes, annotation: dict) -> dict:
  image = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
  height, width = image.shape[:2]
  box = crop_box(annotation['left'], annotation['top'], annotation['width'],
                 annotation['height'], width, height)
  length, digits = encode_digits(annotation['label'])
  return {'image': preprocess(image, box), 'length': length, 'digits': digits,
          'box': np.asarray(box, np.float32)}


# ---------------------------------------------------------------- sources


def _manual_archives(dl_manager):
  """{split: path} from manual_dir, or None when it holds none of them."""
  try:
    manual_dir = dl_manager.manual_dir
  except AssertionError:  # TFDS: the folder does not exist or is empty.
    return None
  paths = {s: manual_dir / f'{s}.tar.gz' for s in SPLITS}
  missing = [p.name for p in paths.values() if not p.exists()]
  if len(missing) == len(paths):
    return None
  if missing:
    raise FileNotFoundError(
        f'svhn_full: manual_dir {manual_dir} has some SVHN archives but lacks '
        f'{", ".join(missing)}; put all of {", ".join(SvhnFull.MANUAL_FILES)} '
        f'there (from {URL}).')
  return paths


def _check_reachable(url: str):
  """Fails at once when offline, instead of after minutes of TFDS retries."""
  if not reachability.host_reachable(url, timeout_s=5.0):
    raise ConnectionError(
        f'svhn_full: cannot reach {urllib.parse.urlparse(url).hostname}. '
        f'Download {", ".join(SvhnFull.MANUAL_FILES)} from {URL} and pass '
        'their folder as manual_dir.')


def _stream(dl_manager, archive):
  """(path in archive, file object) pairs, read sequentially (no seeking)."""
  return dl_manager.iter_archive(tfds.download.Resource(
      path=archive, extract_method=tfds.download.ExtractMethod.TAR_STREAM))


def _annotations(dl_manager, archive) -> dict:
  """{file name: boxes} from the archive's digitStruct.mat.

  h5py needs to seek, and the .mat may come after the images, so it is copied
  to a temporary file in a first pass over the archive.
  """
  with tempfile.TemporaryDirectory() as tmp, \
      contextlib.closing(_stream(dl_manager, archive)) as members:
    path = os.path.join(tmp, 'digitStruct.mat')
    for member, fobj in members:
      if os.path.basename(member) == 'digitStruct.mat':
        with open(path, 'wb') as out:
          shutil.copyfileobj(fobj, out)
        return dict(read_digit_struct(path))
  raise ValueError(f'svhn_full: {archive} holds no digitStruct.mat.')


class SvhnFull(tfds.core.GeneratorBasedBuilder):
  """SVHN format 1 with Goodfellow et al.'s 64x64 digit-box crops."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_FILES = ('train.tar.gz', 'test.tar.gz', 'extra.tar.gz')
  URLS = {s: URL + f'{s}.tar.gz' for s in SPLITS}
  # Needed for `dl_manager.manual_dir`; manual_dir is optional here.
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Optional (the builder downloads them otherwise): put '
      f'{", ".join(MANUAL_FILES)} from {URL} in manual_dir, names unchanged.')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('SVHN format 1: house numbers cropped to 30% around '
                     'their digits and resized to 64x64 (Goodfellow et al. '
                     '2013, section 5.1).'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
            'length': tfds.features.Scalar(
                np.int32, doc='Number of digits (may exceed 5).'),
            'digits': tfds.features.Tensor(
                shape=(MAX_DIGITS,), dtype=np.int32,
                doc='First 5 digits 0..9, -1 where absent.'),
            'box': tfds.features.Tensor(
                shape=(4,), dtype=np.float32,
                doc='Crop (left, top, right, bottom) in original pixels.'),
        }),
        supervised_keys=None,
        homepage=URL,
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    archives = _manual_archives(dl_manager)
    if archives is None:
      _check_reachable(URL)
      archives = dl_manager.download(self.URLS)
    return {split: self._generate_examples(dl_manager, archives[split])
            for split in SPLITS}

  def _generate_examples(self, dl_manager, archive):
    """Streams the archive's PNGs; each must be annotated and vice versa."""
    annotations = _annotations(dl_manager, archive)
    seen = set()
    for member, fobj in _stream(dl_manager, archive):
      name = os.path.basename(member)
      if not name.endswith('.png'):
        continue
      if name not in annotations:
        raise ValueError(f'svhn_full: {member} is not in digitStruct.mat.')
      seen.add(name)
      yield name, _example(fobj.read(), annotations[name])
    if missing := sorted(set(annotations) - seen):
      raise ValueError(f'svhn_full: {archive} lacks {len(missing)} annotated '
                       f'images, e.g. {missing[:3]}.')
