"""AlexNet's image preprocessing and augmentation, as TensorFlow functions.

Krizhevsky et al. 2012. Section 2: each image is rescaled so its shorter side
is 256 and the central 256x256 patch is kept. Section 4.1: training takes
random 224x224 patches (227 for the network as built) and their horizontal
reflections, and adds PCA colour noise; testing averages the softmax over ten
patches, the four corners and the centre and their reflections.

The functions run inside tf.data `map`. Randomness is stateless: each takes a
seed tensor of shape (2,) (see `tf.random.stateless_*`), so an example's
augmentation is a pure function of the seed the pipeline derives for it.
Images go in as uint8 and come out as uint8 (H, W, 3).
"""
import tensorflow as tf

# The RGB principal components of ImageNet training pixels on the [0, 1]
# scale, columns are eigenvectors. AlexNet (section 4.1) computes its own; these
# are the commonly used estimates, from fb.resnet.torch (datasets/imagenet.lua,
# after Caffe's) and used as-is by most reimplementations.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
PCA_STD = 0.1  # section 4.1: a_i ~ N(0, 0.1)


def decode(encoded: tf.Tensor) -> tf.Tensor:
  """uint8 (H, W, 3) from JPEG (imagenet2012, imagenette) or PNG bytes
  (imagenet_resized).

  Decoded whole, once per example: decoding only the central square
  (tf.image.decode_and_crop_jpeg) is no cheaper, since entropy decoding
  still reads every row (benchmarks/input_pipeline.py compares them).
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape((None, None, 3))
  return image


def center_square(image: tf.Tensor) -> tf.Tensor:
  """The central square, side the shorter side: section 2's rescale-then-crop
  keeps exactly this square, so cropping it before resizing is the same and
  resizes fewer pixels."""
  shape = tf.shape(image)
  side = tf.minimum(shape[0], shape[1])
  top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
  return image[top:top + side, left:left + side]


def resize_square(square: tf.Tensor, resize_to: int) -> tf.Tensor:
  """A square image resized to (resize_to, resize_to, 3), float32 in [0, 255].

  Antialiased, since a typical 500x375 photo shrinks by about 1.5x here and
  plain bilinear sampling would alias fine texture; it costs about a third of
  the CPU time per training image (benchmarks/input_pipeline.py).
  """
  image = tf.image.resize(tf.cast(square, tf.float32), (resize_to, resize_to),
                          method='bilinear', antialias=True)
  image.set_shape((resize_to, resize_to, 3))
  return image


def resize_and_center_crop(image: tf.Tensor, resize_to: int) -> tf.Tensor:
  """Section 2: shorter side to `resize_to`, then the central square."""
  return resize_square(center_square(image), resize_to)


def to_uint8(image: tf.Tensor) -> tf.Tensor:
  # Round, not truncate: truncation would darken every image by half a level
  # on average; clip because PCA noise can push a pixel past 0 or 255.
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def random_crop(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """A size x size patch at a uniformly random position (section 4.1)."""
  return tf.image.stateless_random_crop(image, (size, size, 3), seed)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """The horizontal reflection with probability 1/2 (section 4.1)."""
  return tf.image.stateless_random_flip_left_right(image, seed)


def pca_lighting(image: tf.Tensor, seed: tf.Tensor,
                 std: float = PCA_STD) -> tf.Tensor:
  """Adds [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T to every pixel (section 4.1).

  One draw of a ~ N(0, std) per call, i.e. per image per epoch, so the whole
  image shifts by one RGB vector. `image` is float on the [0, 255] scale, hence
  the factor 255 on eigenvalues estimated on [0, 1].

  The result is rounded to uint8 (to_uint8) like every image here. The second
  and third components shift pixels by only about 0.5 and 0.1 levels, but the
  resized pixels are not integers, so rounding dithers: the image's mean moves
  by the shift, not by 0.
  """
  alpha = tf.random.stateless_normal((3,), seed, stddev=std)
  eigvec = tf.constant(PCA_EIGVEC, tf.float32)
  rgb = tf.linalg.matvec(eigvec, alpha * tf.constant(PCA_EIGVAL)) * 255.0
  return image + rgb


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """The central size x size patch (single-crop testing)."""
  shape = tf.shape(image)
  top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
  return image[top:top + size, left:left + size]


def ten_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """(10, size, size, 3): top-left, top-right, bottom-left, bottom-right and
  centre patches, then the same five mirrored (section 4.1, testing)."""
  shape = tf.shape(image)
  bottom, right = shape[0] - size, shape[1] - size
  corners = [image[:size, :size], image[:size, right:],
             image[bottom:, :size], image[bottom:, right:],
             center_crop(image, size)]
  crops = tf.stack(corners)
  return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def train_image(encoded: tf.Tensor, seed: tf.Tensor, size: int,
                resize_to: int, augment: str) -> tf.Tensor:
  """A training example from its encoded image, uint8 (size, size, 3)."""
  image = resize_and_center_crop(decode(encoded), resize_to)
  return crop_and_augment(image, seed, size, augment)


def crop_and_augment(image: tf.Tensor, seed: tf.Tensor, size: int,
                     augment: str) -> tf.Tensor:
  """uint8 (size, size, 3) from a float image resized as in section 2.

  'none': the centre crop (as in testing); 'crop_flip': random crop and
  reflection; 'alexnet': those plus PCA lighting.
  """
  if augment == 'none':
    return tf.ensure_shape(to_uint8(center_crop(image, size)),
                           (size, size, 3))
  crop_seed, flip_seed, light_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  image = random_flip(random_crop(image, size, crop_seed), flip_seed)
  if augment == 'alexnet':
    image = pca_lighting(image, light_seed)
  return tf.ensure_shape(to_uint8(image), (size, size, 3))


def eval_image(encoded: tf.Tensor, size: int, resize_to: int,
               crops: int) -> tf.Tensor:
  """uint8 (size, size, 3) for 1 crop, (10, size, size, 3) for 10."""
  image = to_uint8(resize_and_center_crop(decode(encoded), resize_to))
  if crops == 1:
    return tf.ensure_shape(center_crop(image, size), (size, size, 3))
  return tf.ensure_shape(ten_crop(image, size), (10, size, size, 3))
