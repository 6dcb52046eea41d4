"""Pictures out: [0, 1] float arrays to PNG grids, GIFs, heat-map overlays and
an `index.html` that links every picture a command wrote."""
import dataclasses
import html
import pathlib

import numpy as np
from PIL import Image


def normalize(x) -> np.ndarray:
  """Each image (leading axis) stretched to [0, 1]: for filters and maps whose
  own scale means nothing on screen."""
  x = np.asarray(x, np.float32)
  axes = tuple(range(1, x.ndim))
  lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
  return (x - lo) / np.maximum(hi - lo, 1e-12)


def grid(images, cols: int | None = None, pad: int = 2,
         pad_value: float = 1.0) -> np.ndarray:
  """(N, H, W, C) -> one (rows*(H+pad)-pad, cols*(W+pad)-pad, C) image."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  cols = cols or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), pad_value,
                np.float32)
  for i, image in enumerate(images):
    r, k = divmod(i, cols)
    out[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = image
  return out


def enlarge(image, min_side: int = 256) -> np.ndarray:
  """Nearest-neighbour upscaling by a whole factor, so 28-pixel pictures are
  visible and their pixels stay sharp."""
  image = np.asarray(image)
  factor = max(1, -(-min_side // min(image.shape[:2])))
  return image.repeat(factor, axis=0).repeat(factor, axis=1)


def to_uint8(image) -> np.ndarray:
  """[0, 1] floats (H, W, C) -> uint8, one channel as a grey image."""
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  image = np.round(image * 255).astype(np.uint8)
  return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def heat_overlay(image, heat, alpha: float = 0.6) -> np.ndarray:
  """`heat` (H, W), scaled to [0, 1], drawn in matplotlib's 'jet' over a
  grey copy of `image` (H, W, C)."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  grey = np.asarray(image, np.float32).mean(-1, keepdims=True)
  colour = colormaps['jet'](normalize(heat[None])[0])[..., :3]
  return (1 - alpha) * grey + alpha * colour


def save_png(path, image) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(to_uint8(image)).save(path)
  return path


def save_gif(path, frames, fps: float = 10.0) -> pathlib.Path:
  """An endlessly looping animated GIF of (H, W, C) [0, 1] frames."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  pictures = [Image.fromarray(to_uint8(f)) for f in frames]
  pictures[0].save(path, save_all=True, append_images=pictures[1:],
                   duration=round(1000 / fps), loop=0)
  return path


@dataclasses.dataclass
class Gallery:
  """Collects (section, picture, caption) and writes DIR/index.html."""
  out: pathlib.Path
  title: str = 'Seeing inside the network'
  entries: list = dataclasses.field(default_factory=list)

  def __post_init__(self):
    self.out = pathlib.Path(self.out)
    self.out.mkdir(parents=True, exist_ok=True)

  def add(self, section: str, path, caption: str = ''):
    self.entries.append((section, pathlib.Path(path), caption))

  def write(self) -> pathlib.Path:
    body, sections = [], {}
    for section, path, caption in self.entries:
      sections.setdefault(section, []).append((path, caption))
    for section, items in sections.items():
      body.append(f'<h2>{html.escape(section)}</h2>')
      for path, caption in items:
        href = html.escape(path.relative_to(self.out).as_posix()
                           if path.is_absolute() else path.as_posix())
        body.append(f'<figure><a href="{href}"><img src="{href}"></a>'
                    f'<figcaption>{html.escape(caption or path.name)}'
                    '</figcaption></figure>')
    page = ('<!doctype html><meta charset="utf-8">'
            f'<title>{html.escape(self.title)}</title><style>'
            'body{font-family:sans-serif;margin:2em}'
            'figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}'
            'img{max-width:512px;image-rendering:pixelated}'
            'figcaption{max-width:512px;font-size:90%}</style>'
            f'<h1>{html.escape(self.title)}</h1>' + '\n'.join(body))
    index = self.out / 'index.html'
    index.write_text(page)
    return index
