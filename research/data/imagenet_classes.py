"""ILSVRC-2012's 1000 classes: WordNet ids and short English names.

imagenet_classes.tsv beside this file lists them in class-index order, the
order of TFDS's imagenet2012 labels and of Caffe's synset_words.txt (both
sorted by WordNet id), so index i is the BVLC models' output i. The ids are
TFDS's `imagenet2012/labels.txt`; the names are torchvision's short ones
(`torchvision/models/_meta.py`, BSD licence), which tell apart WordNet's
duplicate names ('crane bird' and 'crane', 'maillot' and 'maillot tank
suit'), so a name picks one class.
"""
import difflib
import functools
import pathlib

from research import errors

_FILE = pathlib.Path(__file__).with_name('imagenet_classes.tsv')


class ClassNameError(errors.UserError, ValueError):
  """A class name or index that ImageNet does not have."""


@functools.cache
def _table() -> tuple[tuple[str, ...], tuple[str, ...]]:
  rows = [line.split('\t') for line in _FILE.read_text().splitlines()]
  return tuple(r[0] for r in rows), tuple(r[1] for r in rows)


def names() -> list[str]:
  return list(_table()[1])


def synsets() -> list[str]:
  return list(_table()[0])


def display_names(labels) -> list[str]:
  """Human-readable names for TFDS imagenet2012 label names (WordNet ids);
  other names pass unchanged."""
  by_synset = dict(zip(*_table()))
  return [by_synset.get(label, label) for label in labels]


def index(query: str) -> int:
  """The class index of a name ('dumbbell'), a WordNet id ('n03255030') or
  an index ('543')."""
  if query.isdigit():
    if int(query) < len(_table()[1]):
      return int(query)
    raise ClassNameError(f'ImageNet has classes 0..999, not {query}.')
  for column in _table():
    if query in column:
      return column.index(query)
  lowered = [n.lower() for n in _table()[1]]
  if query.lower() in lowered:
    return lowered.index(query.lower())
  close = difflib.get_close_matches(query.lower(), lowered, n=3)
  hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
  raise ClassNameError(f'No ImageNet class {query!r}.{hint} Give a name '
                       '(dumbbell), a WordNet id (n03255030) or an index '
                       '(543).')
