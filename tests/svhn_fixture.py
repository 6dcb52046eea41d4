"""A tiny SVHN format 1 in the real download layout, for offline tests.

`<split>.tar.gz` holds `<split>/N.png` and `<split>/digitStruct.mat`, a MATLAB
v7.3 file (HDF5 behind a 512-byte MATLAB header): `/digitStruct/name` and
`/digitStruct/bbox` are (N, 1) arrays of references into `#refs#`, names are
uint16 char arrays, and each bbox group has (k, 1) datasets height, left, top,
width and label, holding the value inline when k == 1 and references to (1, 1)
datasets when k > 1, as MATLAB writes a struct array of cells.

The .mat sits after the images in train, first in test and between images in
extra, so a reader that needs it before the images is tested in every order.
Images are seeded noise, so a crop off by one pixel gives other bytes.
"""
import dataclasses
import io
import pathlib
import tarfile

import h5py
import numpy as np
from PIL import Image

# split: [(file name, (height, width), [(label, left, top, width, height)])].
# Labels are SVHN's: 1..9, and 10 for the digit 0.
LAYOUT = {
    'train': [
        ('1.png', (40, 60), [(5, 20, 8, 12, 25)]),  # one digit: inline values
        ('2.png', (50, 120), [(1, 30, 10, 14, 28), (10, 46, 12, 15, 27)]),
        ('3.png', (48, 100), [(d, 5 + 15 * i, 9 + i % 2, 13, 30)
                              for i, d in enumerate((2, 3, 10, 4, 7, 1))]),
        # Boxes over the border (real SVHN has negative tops): clipped crop.
        ('4.png', (45, 70), [(7, 2, -1, 16, 40), (8, 52, 0, 16, 44)]),
    ],
    'test': [
        ('1.png', (50, 80), [(10, 33, 12, 14, 26)]),
        ('2.png', (60, 110), [(4, 10, 15, 16, 30), (10, 28, 14, 16, 31),
                              (10, 46, 16, 15, 30), (9, 63, 15, 16, 29)]),
        ('3.png', (40, 64), [(6, 18, 6, 11, 24), (2, 30, 7, 12, 23),
                             (3, 43, 6, 11, 24)]),
    ],
    'extra': [
        ('1.png', (45, 100), [(d, 8 + 16 * i, 10, 14, 25)
                              for i, d in enumerate((1, 2, 3, 4, 5))]),
        ('2.png', (60, 40), [(3, 12, 18, 15, 24)]),
        ('3.png', (55, 90), [(10, 25, 12, 18, 33), (1, 45, 11, 14, 33)]),
    ],
}
_MAT_POSITION = {'train': 'last', 'test': 'first', 'extra': 'middle'}


@dataclasses.dataclass(frozen=True)
class SvhnImage:
  """One fixture image: its pixels and digitStruct fields, one per digit."""
  name: str
  pixels: np.ndarray  # (height, width, 3) uint8, exactly the PNG's content.
  label: tuple
  left: tuple
  top: tuple
  width: tuple
  height: tuple


def _image(name, size, digits, rng) -> SvhnImage:
  pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
  label, left, top, width, height = (tuple(float(v) for v in field)
                                     for field in zip(*digits))
  return SvhnImage(name, pixels, label, left, top, width, height)


def _png(pixels: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, 'PNG')
  return buf.getvalue()


class _MatWriter:
  """Writes datasets under '#refs#' and hands back references, as MATLAB."""

  def __init__(self, mat: h5py.File):
    self._refs = mat.create_group('#refs#')
    self._count = 0

  def _key(self) -> str:
    self._count += 1
    return f'r{self._count}'

  def dataset(self, data, matlab_class: str):
    ds = self._refs.create_dataset(self._key(), data=data)
    ds.attrs['MATLAB_class'] = np.bytes_(matlab_class)
    return ds.ref

  def name(self, text: str):
    codes = np.array([[ord(c)] for c in text], np.uint16)
    return self.dataset(codes, 'char')

  def field(self, group, key: str, values: tuple):
    if len(values) == 1:
      data = np.array([[values[0]]], np.float64)
    else:
      data = np.array([[self.dataset(np.array([[v]], np.float64), 'double')]
                       for v in values], dtype=h5py.ref_dtype)
    group.create_dataset(key, data=data)

  def bbox(self, image: SvhnImage):
    group = self._refs.create_group(self._key())
    group.attrs['MATLAB_class'] = np.bytes_('struct')
    for key in ('height', 'label', 'left', 'top', 'width'):
      self.field(group, key, getattr(image, key))
    return group.ref


def _matlab_header() -> bytes:
  """MATLAB's 128-byte text header at the start of the HDF5 user block."""
  text = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .'
  return text.ljust(116, b' ') + b'\0' * 8 + b'\x00\x02' + b'IM'


def digit_struct_bytes(images) -> bytes:
  """A digitStruct.mat describing `images`, in MATLAB v7.3's HDF5 layout."""
  buf = io.BytesIO()
  with h5py.File(buf, 'w', userblock_size=512) as mat:
    writer = _MatWriter(mat)
    struct = mat.create_group('digitStruct')
    struct.attrs['MATLAB_class'] = np.bytes_('struct')
    names = [[writer.name(image.name)] for image in images]
    boxes = [[writer.bbox(image)] for image in images]
    struct.create_dataset('name', data=np.array(names, dtype=h5py.ref_dtype))
    struct.create_dataset('bbox', data=np.array(boxes, dtype=h5py.ref_dtype))
  data = bytearray(buf.getvalue())
  data[:128] = _matlab_header()
  return bytes(data)


def _add(tar: tarfile.TarFile, name: str, data: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _members(split: str, images) -> list:
  """(archive path, bytes) in archive order, the .mat placed per split."""
  pngs = [(f'{split}/{image.name}', _png(image.pixels)) for image in images]
  mat = [(f'{split}/digitStruct.mat', digit_struct_bytes(images)),
         (f'{split}/see_bboxes.m', b'% shows the boxes\n')]
  at = {'first': 0, 'middle': len(pngs) // 2, 'last': len(pngs)}
  at = at[_MAT_POSITION[split]]
  return pngs[:at] + mat + pngs[at:]


def write_svhn_archives(directory, seed: int = 0) -> dict:
  """Writes train/test/extra.tar.gz into `directory` (created).

  Returns {split: [SvhnImage]} in digitStruct order: what a reader of the
  archives should find.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  out = {}
  for split, layout in LAYOUT.items():
    images = [_image(name, size, digits, rng) for name, size, digits in layout]
    with tarfile.open(directory / f'{split}.tar.gz', 'w:gz') as tar:
      for path, data in _members(split, images):
        _add(tar, path, data)
    out[split] = images
  return out
