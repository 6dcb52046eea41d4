"""Images to look at: a run's dataset split, its class names, a user's own
image files, and a real photograph for DeepDream. Everything comes out as
float32 [0, 1] (N, H, W, C) at the network's input size."""
import pathlib

import numpy as np

from research.data import pipeline
from research.data import tfds_source

PHOTO = 'grace_hopper.jpg'  # shipped with matplotlib (mpl-data/sample_data)


def split_images(data_config, spec: str, limit: int,
                 image_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
  """(images, labels): the first `limit` examples of split `spec`, seen as in
  evaluation (centre crops, resized to `image_shape`)."""
  if data_config.streaming:
    from research.data import streaming  # pylint: disable=g-import-not-at-top
    images, labels = [], []
    for batch in streaming.eval_batches(data_config, spec, min(limit, 256)):
      images.append(batch['image'][batch['mask']])
      labels.append(batch['label'][batch['mask']])
      if sum(map(len, images)) >= limit:
        break
    arrays = {'image': np.concatenate(images), 'label': np.concatenate(labels)}
  else:
    arrays = tfds_source.load_splits(data_config, {'split': spec})['split']
    if data_config.augment == 'random_crop':
      arrays = pipeline.center_crop(arrays, data_config.image_size)
  images = arrays['image'][:limit]
  return resize(images.astype(np.float32) / 255.0, image_shape), \
      arrays['label'][:limit]


def resize(images: np.ndarray, image_shape: tuple) -> np.ndarray:
  """(N, h, w, c) -> (N, H, W, C) bilinear, a grey image repeated to RGB."""
  import jax  # pylint: disable=g-import-not-at-top
  h, w, c = image_shape
  if images.shape[-1] != c:
    images = np.repeat(images.mean(-1, keepdims=True), c, axis=-1)
  if images.shape[1:3] != (h, w):
    images = np.asarray(jax.image.resize(images, images.shape[:1] + (h, w, c),
                                         'bilinear'))
  return np.clip(images, 0.0, 1.0)


def class_names(data_config) -> list[str] | None:
  """The label names TFDS stores ('0'..'9' for MNIST, WordNet names for
  ImageNet); numbers when the dataset has none; None without a 'label'."""
  features = tfds_source.prepared_builder(data_config).info.features
  if 'label' not in features:
    return None
  label = features['label']
  names = getattr(label, 'names', None)
  return list(names) if names else [str(i) for i in range(label.num_classes)]


def photo(max_side: int, path=None) -> np.ndarray:
  """The photograph at `path`, by default a real one (Grace Hopper, from
  matplotlib's sample data), (H, W, 3) in [0, 1], its longer side scaled to
  `max_side`."""
  from matplotlib import cbook  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with (open(path, 'rb') if path else cbook.get_sample_data(PHOTO)) as f:
    image = Image.open(f).convert('RGB')
  scale = max_side / max(image.size)
  image = image.resize((round(image.width * scale), round(image.height * scale)),
                       Image.BICUBIC)
  return np.asarray(image, np.float32) / 255.0


IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')


def image_paths(spec: str) -> list[pathlib.Path]:
  """The files of --images: a comma-separated list, or a folder's images in
  name order."""
  paths = [pathlib.Path(p) for p in spec.split(',') if p]
  if len(paths) == 1 and paths[0].is_dir():
    paths = sorted(p for p in paths[0].iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
      kinds = ', '.join(IMAGE_SUFFIXES)
      raise FileNotFoundError(f'{spec} holds no images ({kinds}): pass a '
                              'folder of photos or a list of files.')
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    raise FileNotFoundError(f'No image file {", ".join(missing)}: --images '
                            'takes files (A.jpg,B.png) or one folder.')
  return paths


def evaluation_view(path, image_shape: tuple, resize_to: int) -> np.ndarray:
  """An image file as the network sees it in evaluation, (H, W, C) in [0, 1]:
  as it is when it has the input size already (so its numbers can be
  compared with another framework's), else its shorter side scaled to
  `resize_to` and the centre crop (0: scaled to the input size)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w, c = image_shape
  with Image.open(path) as image:
    image = image.convert('RGB' if c == 3 else 'L')
    if image.size != (w, h):
      if resize_to:
        scale = resize_to / min(image.size)
        image = image.resize((max(w, round(image.width * scale)),
                              max(h, round(image.height * scale))),
                             Image.BILINEAR)
        left, top = (image.width - w) // 2, (image.height - h) // 2
        image = image.crop((left, top, left + w, top + h))
      else:
        image = image.resize((w, h), Image.BILINEAR)
    pixels = np.asarray(image, np.float32) / 255.0
  return pixels.reshape(h, w, c)
