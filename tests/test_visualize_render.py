"""Feature visualization by optimisation on two convnets trained on real MNIST
digits planted on 32x32 canvases (tests/planted_digits.py).

The class visualizations are rendered once for the module: with the prior
(Fourier spectrum, sigmoid, random transformations) and by naive pixel ascent
(no spatial parameterization, no transformations), the same objective and
step budget for both.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.visualize import objectives
from research.visualize import params
from research.visualize import render
from research.visualize import transforms

CLASSES = jnp.arange(10)
STEPS = 128
BATCH = 4   # images per class, each seeing its own transformations

# The canvases' background is black and digits were planted anywhere: pad and
# fill with black, not Lucid's ImageNet grey, and jitter by a few pixels
# (Lucid's numbers scaled to 32 pixels give 1, too little to stop the images
# relying on exact pixel positions). The L1 term keeps the background black.
def digit_transforms(scales=transforms.SCALES):
  return transforms.compose(
      transforms.pad(4, 0.0), transforms.jitter(4),
      transforms.scale_rotate(scales=scales, value=0.0), transforms.jitter(2))


DIGIT_TRANSFORMS = digit_transforms()
PENALTY = 20 * objectives.l1()


def class_objective(t):
  return objectives.class_logit(t) - PENALTY


@pytest.fixture(scope='module')
def prior(planted_nets):
  traced = []   # the targets objective_for_target was called with

  def counted(t):
    traced.append(t)
    return class_objective(t)

  renderer = render.renderer(planted_nets[2], counted, steps=STEPS,
                             batch=BATCH, transform=DIGIT_TRANSFORMS)
  images, trace = renderer(CLASSES, jax.random.key(0))
  return renderer, np.asarray(images), np.asarray(trace), traced


@pytest.fixture(scope='module')
def naive(planted_nets):
  images, trace = render.render(planted_nets[2], class_objective, CLASSES,
                                jax.random.key(0), steps=STEPS, batch=BATCH,
                                param=params.pixels,
                                transform=transforms.identity)
  return np.asarray(images), np.asarray(trace)


def total_variation(images):
  return float(np.mean(np.abs(np.diff(images, axis=-3)))
               + np.mean(np.abs(np.diff(images, axis=-2))))


def high_frequency_share(images):
  """Share of the spectral power (mean removed) above half the Nyquist
  frequency, 0.25 cycles per pixel."""
  x = images[..., 0] - images[..., 0].mean(axis=(-2, -1), keepdims=True)
  power = np.abs(np.fft.fft2(x)) ** 2
  h, w = x.shape[-2:]
  f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
  return float(power[..., f > 0.25].sum() / power.sum())


def target_probabilities(net, images):
  """(T, B): `net`'s probability of each image's own target class."""
  t, b = images.shape[:2]
  p = np.asarray(net.probabilities(images.reshape((t * b,) + images.shape[2:])))
  return p.reshape(t, b, -1)[np.arange(t), :, np.arange(t)]


def test_shapes_range_and_the_objective_rises(prior):
  _, images, trace, _ = prior
  assert images.shape == (10, BATCH, 32, 32, 1)
  assert trace.shape == (10, STEPS)
  assert images.min() >= 0.0 and images.max() <= 1.0
  early, late = trace[:, :8].mean(1), trace[:, -STEPS // 4:].mean(1)
  print('objective early', early.round(1), 'late', late.round(1))
  assert np.all(late > early + 5.0)


def test_prior_is_smoother_than_naive_pixel_ascent(prior, naive):
  (_, with_prior, _, _), (without, _) = prior, naive
  tv = total_variation(with_prior), total_variation(without)
  hf = high_frequency_share(with_prior), high_frequency_share(without)
  print(f'total variation prior {tv[0]:.3f} naive {tv[1]:.3f}; '
        f'high-frequency share prior {hf[0]:.3f} naive {hf[1]:.3f}')
  assert tv[0] < 0.8 * tv[1]
  assert hf[0] < 0.6 * hf[1]


def top1_rate(net, images):
  """(T,): the share of each target's pictures `net` classifies as it."""
  t, b = images.shape[:2]
  p = np.asarray(net.probabilities(images.reshape((t * b,) + images.shape[2:])))
  return (p.reshape(t, b, -1).argmax(-1) == np.arange(t)[:, None]).mean(1)


def test_the_first_net_sees_its_own_classes(prior, planted_nets):
  """Every picture is read as its target, with most of the probability.
  Not each picture's p above a bar: the least of 40 moves with XLA's CPU
  code (0.99 with an AVX2 machine's default code, 0.96 with
  --xla_cpu_max_isa=AVX; results/README.md, 2026-12-06) while the mean stays
  near 1."""
  p = target_probabilities(planted_nets[2], prior[1])
  print('first net, mean p', p.mean(), 'least p', p.min())
  assert np.all(top1_rate(planted_nets[2], prior[1]) == 1.0)
  assert p.mean() > 0.95


@pytest.fixture(scope='module')
def three_keys(planted_nets):
  """(T, 3 keys x BATCH, H, W, C): pictures from keys 0, 1, 2, so a claim
  about transfer does not rest on one lucky key, rendered with the library's
  default budget of 512 steps (the other tests use 128 to save time) and
  scales of 0.8-1.2, wider than Lucid's 0.9-1.1: pictures that must survive
  more transformations depend less on one net's exact pixels (Olah et al.,
  Feature Visualization, 2017, "transformation robustness")."""
  renderer = render.renderer(
      planted_nets[2], class_objective, batch=BATCH,
      transform=digit_transforms(scales=(0.8, 0.9, 1.0, 1.1, 1.2)))
  return np.concatenate([np.asarray(renderer(CLASSES, jax.random.key(k))[0])
                         for k in (0, 1, 2)], axis=1)


def test_an_independently_trained_net_recognises_every_class(three_keys,
                                                             planted_nets):
  """The pictures carry their class to a net that did not make them: for
  every class most of its 12 pictures are read as it (chance: 1 in 10), and
  over all of them the target gets most of the probability. Class 9 is the
  hardest and closest to the bar of a per-class mean p: 0.96 or 0.91 by
  XLA's CPU code (as above), so the bar is on what transfers, the majority read, not on
  that mean (results/README.md, 2026-12-06)."""
  p = target_probabilities(planted_nets[3], three_keys)
  rate = top1_rate(planted_nets[3], three_keys)
  print('second net, mean p per class', p.mean(1).round(3), 'top-1 per class',
        rate.round(3))
  assert np.all(rate > 0.5)
  assert p.mean() > 0.9
  assert np.all(target_probabilities(planted_nets[2], three_keys) > 0.95)
