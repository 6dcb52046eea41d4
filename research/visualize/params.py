"""Image parameterizations: what gradient ascent moves to make an image.

A `Parameterization` pairs `init(key) -> params` with `images(params) ->
(B, H, W, C)` in [0, 1]. The optimiser only ever sees `params`, so the choice
of space is a prior: the same pixels are easy or hard to reach depending on it.

`fourier` is Lucid's default (Mordvintsev, Pezzotti, Schubert, Olah,
"Differentiable Image Parameterizations", Distill 2018; Olah, Mordvintsev,
Schubert, "Feature Visualization", Distill 2017): a spectrum whose
coefficients are scaled by 1 / frequency, so that Adam's equal-sized steps on
every coefficient give images with natural (1/f) statistics instead of the
high-frequency patterns plain pixel gradients produce, then decorrelated
colour and a sigmoid. `pixels` is the naive baseline.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

# Square root of the colour covariance of ImageNet, from tensorflow/lucid.
COLOR_CORRELATION = np.array([[0.26, 0.09, 0.02],
                              [0.27, 0.00, -0.05],
                              [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION_NORMALIZED = (
    COLOR_CORRELATION / np.max(np.linalg.norm(COLOR_CORRELATION, axis=0)))


@dataclasses.dataclass(frozen=True)
class Parameterization:
  init: Callable[[jax.Array], Any]        # key -> params
  images: Callable[[Any], jax.Array]      # params -> (B, H, W, C) in [0, 1]
  shape: tuple                            # (B, H, W, C)
  name: str


def rfft2_freqs(h: int, w: int) -> np.ndarray:
  """|frequency| in cycles per pixel of each coefficient of an rfft2 of an
  (h, w) image: shape (h, w // 2 + 1)."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fx * fx + fy * fy)


def fourier(batch: int, h: int, w: int, c: int, *, sd: float = 0.01,
            decay_power: float = 1.0,
            decorrelate: bool = True) -> Parameterization:
  """Lucid's `fft_image` + `to_valid_rgb(decorrelate=True, sigmoid=True)`.

  Colour decorrelation applies to 3 channels only: a grey image has no
  colours to decorrelate."""
  freqs = rfft2_freqs(h, w)
  # The floor at 1 / max(h, w) keeps the DC term finite; sqrt(h w) undoes
  # irfft2's 1 / (h w) so the pixel scale does not shrink with image size.
  scale = (np.sqrt(h * w) / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
           ).astype(np.float32)

  def init(key):
    return sd * jax.random.normal(key, (2, batch, c) + freqs.shape)

  def images(spectrum):
    coefficients = jax.lax.complex(spectrum[0], spectrum[1]) * scale
    x = jnp.fft.irfft2(coefficients, s=(h, w))        # (B, C, H, W)
    x = jnp.moveaxis(x, 1, -1) / 4.0
    if decorrelate and c == 3:
      x = x @ COLOR_CORRELATION_NORMALIZED.T
    return jax.nn.sigmoid(x)

  return Parameterization(init, images, (batch, h, w, c), 'fourier')


def pixels(batch: int, h: int, w: int, c: int, *,
           sd: float = 0.01) -> Parameterization:
  """The naive baseline: one free parameter per pixel, no spatial prior.

  The sigmoid is the same squashing `fourier` ends with (Lucid's
  `image(fft=False, decorrelate=False)`), so a comparison of the two isolates
  the spatial prior rather than how the [0, 1] range is enforced; clipping
  instead would zero the gradient of every saturated pixel."""
  def init(key):
    return sd * jax.random.normal(key, (batch, h, w, c))

  return Parameterization(init, jax.nn.sigmoid, (batch, h, w, c), 'pixels')
