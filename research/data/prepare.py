"""Stored pixels -> model input, on the device, and crop-averaged scoring.

The training loop and the visualizer both see a network through these: the
dataset keeps its pixels as stored (uint8, MNIST's 28x28 grey digits) and the
model's input is made from them inside the compiled step.
"""
import jax
import jax.numpy as jnp


def to_float(images):
  """uint8 pixels -> [0, 1]; float inputs pass unchanged."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def augment_on_device(batch: dict):
  """The batch's images with the per-image mirror ('flip', (B,) bool) and
  PCA colour shift ('pixel_shift', (B, 3) integer pixel levels, clipped to
  0..255) a batch may carry: the prepared store's augmentation
  (research/data/prepared.py), drawn on the host, applied here."""
  images = batch['image']
  if 'flip' in batch:
    images = jnp.where(batch['flip'][:, None, None, None], images[:, :, ::-1],
                       images)
  if 'pixel_shift' in batch:
    shifted = (images.astype(jnp.int32)
               + batch['pixel_shift'][:, None, None, :].astype(jnp.int32))
    images = jnp.clip(shifted, 0, 255).astype(jnp.uint8)
  return images


def make_prepare(image_size: int = 0, channels: int = 0, scale: float = 1.0,
                 mean=(), subtract_image_mean: bool = False):
  """Stored pixels -> model input, on the device: [0, 1] floats times `scale`
  minus the per-channel `mean` (or, with `subtract_image_mean`, each image's
  own mean), resized (bilinear) to image_size x image_size and a grey channel
  repeated to `channels`; so MNIST's 28x28 digits can feed AlexNet's RGB input
  without a copy of the dataset at that size in host memory. 0 leaves a
  dimension as is."""
  def prepare(images):
    x = to_float(images)
    if image_size and x.shape[-3:-1] != (image_size, image_size):
      x = jax.image.resize(
          x, x.shape[:-3] + (image_size, image_size, x.shape[-1]), 'bilinear')
    if channels and x.shape[-1] != channels:
      x = jnp.repeat(x, channels // x.shape[-1], axis=-1)
    x = x * scale - jnp.asarray(mean or 0.0, jnp.float32)
    if subtract_image_mean:
      x -= jnp.mean(x, axis=(-3, -2, -1), keepdims=True)
    return x
  return prepare


def crop_averaged_logits(model, variables, images):
  """Logits of a batch of inputs; for (B, crops, H, W, C) images the log of the
  softmax averaged over the crops (AlexNet section 4.1's 10-patch test), which
  ranks classes as that average and gives its cross-entropy. `variables` are
  the model's ({'params': ..., and 'batch_stats' if it has BatchNorm})."""
  if images.ndim != 5:
    return model.apply(variables, images, train=False)
  b, crops = images.shape[:2]
  logits = model.apply(variables, images.reshape((b * crops,)
                                                 + images.shape[2:]),
                       train=False)
  probs = jax.nn.softmax(logits.reshape((b, crops, -1)), axis=-1)
  return jnp.log(jnp.mean(probs, axis=1))


def from_config(data_config):
  """make_prepare with a config.data's fields."""
  d = data_config
  return make_prepare(d.image_size, d.channels, d.pixel_scale, d.pixel_mean,
                      d.subtract_image_mean)
