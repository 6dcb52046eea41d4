"""Attribution and Zeiler-Fergus top patches on convnets trained on planted
MNIST digits (tests/planted_digits.py): where each digit is, the test knows."""
import numpy as np
import pytest

from research.visualize import attribution
from research.visualize import top_patches

COUNT = 100  # test images the maps are judged on


def _inside(boxes, rows, cols):
  return ((boxes[:, 0] <= rows) & (rows < boxes[:, 2])
          & (boxes[:, 1] <= cols) & (cols < boxes[:, 3]))


def _peak_inside_rate(maps, boxes) -> float:
  rows, cols = np.unravel_index(
      np.argmax(maps.reshape(len(maps), -1), axis=1), maps.shape[1:])
  return float(np.mean(_inside(boxes, rows, cols)))


@pytest.mark.parametrize('which', [2, 3])
def test_occlusion_peaks_on_the_digit(planted_nets, which):
  _, test, *_ = planted_nets
  net = planted_nets[which]
  images, labels = test.images[:COUNT], test.labels[:COUNT]
  maps = attribution.occlusion(net, images, labels, size=6, stride=2)
  assert maps.shape == (COUNT, 32, 32)
  rate = _peak_inside_rate(maps, test.boxes[:COUNT])
  print(f'occlusion peak inside the digit: {rate:.0%}')
  assert rate >= 0.9


def test_occlusion_compiles_once_for_any_number_of_images(planted_nets):
  _, test, net, _ = planted_nets
  grey = float(test.images.mean())  # not each call's own images' mean
  before = attribution._occluded_scores._cache_size()
  few = attribution.occlusion(net, test.images[:3], test.labels[:3], size=7,
                              stride=3, fill=grey, score='logit',
                              batch_size=128)
  many = attribution.occlusion(net, test.images[:40], test.labels[:40],
                               size=7, stride=3, fill=grey, score='logit',
                               batch_size=128)
  assert attribution._occluded_scores._cache_size() == before + 1
  # Each image's map is its own, whatever batch it shared.
  np.testing.assert_allclose(few, many[:3], rtol=1e-4, atol=1e-5)


def test_integrated_gradients_completeness(planted_nets):
  _, test, net, _ = planted_nets
  images, labels = test.images[:50], test.labels[:50]
  attributions = attribution.integrated_gradients(net, images, labels)
  assert attributions.shape == images.shape
  rows = np.arange(len(labels))
  change = (np.asarray(net.logits(images))[rows, labels]
            - np.asarray(net.logits(np.zeros_like(images)))[rows, labels])
  error = np.abs(attributions.sum(axis=(1, 2, 3)) - change) / np.abs(change)
  print(f'IG completeness error: max {error.max():.2%}, '
        f'median {np.median(error):.2%}')
  assert error.max() < 0.01


def test_saliency_is_larger_on_the_digit(planted_nets):
  _, test, net, _ = planted_nets
  maps = attribution.saliency(net, test.images[:COUNT], test.labels[:COUNT])
  assert maps.shape == (COUNT, 32, 32)
  rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing='ij')
  inside = _inside(test.boxes[:COUNT, :, None, None], rows, cols)
  mean_in = (maps * inside).sum((1, 2)) / inside.sum((1, 2))
  mean_out = (maps * ~inside).sum((1, 2)) / (~inside).sum((1, 2))
  print(f'saliency inside/outside: {mean_in.mean():.3f}/{mean_out.mean():.3f}')
  assert np.mean(mean_in > mean_out) >= 0.9


def test_first_layer_filters_and_top5(planted_nets, tmp_path):
  _, test, net, _ = planted_nets
  filters = attribution.first_layer_filters(net)
  kernel = np.asarray(net.params['conv1']['conv']['kernel'])
  assert filters.shape == (16, 5, 5, 1)
  assert filters.min() >= 0 and filters.max() <= 1
  # Zero weight is grey, and the sign of each weight is kept.
  np.testing.assert_array_equal(filters[..., 0] > 0.5,
                                np.moveaxis(kernel[:, :, 0], -1, 0) > 0)
  predictions = attribution.top5_panel(
      net, test.images[:4], [f'digit {i}' for i in range(10)],
      path=tmp_path / 'top5.png', labels=test.labels[:4])
  probs = np.asarray(net.probabilities(test.images[:4]))
  np.testing.assert_array_equal(predictions.classes[:, 0], probs.argmax(1))
  assert np.all(np.diff(predictions.probabilities, axis=1) <= 0)
  assert predictions.names[0][0] == f'digit {probs[0].argmax()}'
  assert (tmp_path / 'top5.png').stat().st_size > 1000


@pytest.mark.parametrize('layer, size, stride', [
    ('conv1/relu', 5, 1),       # 5x5 VALID
    ('conv2/relu', 14, 2),      # 5 + 1 (2x2 pool) + 4 * 2 (5x5 after /2)
    ('fc1/relu', 32, 0)])       # dense: the whole canvas
def test_receptive_field(planted_nets, layer, size, stride):
  field = top_patches.receptive_field(planted_nets[2], layer)
  assert field.size == (size, size)
  assert field.stride == (stride, stride)
  assert field.offset == (0, 0)


def test_top9_finds_the_planted_patches(planted_nets):
  _, test, net, _ = planted_nets
  kernel = np.asarray(net.params['conv1']['conv']['kernel'])[:, :, 0]
  channel = int(np.argmax(np.square(kernel).sum((0, 1))))
  w = kernel[..., channel]
  # Beats any [0, 1] window's response (at most sum |w|) threefold; a black
  # margin keeps windows overlapping a patch below its centred response
  # (Cauchy-Schwarz), so the best unit is the planted one.
  patch = 3 * np.abs(w).sum() / np.square(w).sum() * w
  images = test.images.copy()
  chosen = [0, 5, 130, 257, 400, 512, 777, 901, 999]  # 999: the padded batch
  corners = [(0, 0), (27, 27), (10, 4), (3, 20), (20, 3), (14, 14), (0, 27),
             (27, 0), (8, 9)]
  expected = {}
  for index, (top, left) in zip(chosen, corners):
    _plant(images[index], patch, top, left)
    expected[index] = (top, left, top + 5, left + 5)
  _plant(images[400], 0.8 * patch, 2, 22)  # a weaker second copy
  before = top_patches._merge._cache_size()
  found = top_patches.top_patches(net, 'conv1/relu', images, k=9,
                                  batch_size=128)
  assert top_patches._merge._cache_size() == before + 1
  assert sorted(found.images[channel]) == sorted(chosen)
  for index, box, cut in zip(found.images[channel], found.boxes[channel],
                             found.patches[channel]):
    assert tuple(box) == expected[index]
    np.testing.assert_allclose(cut[..., 0], patch, rtol=1e-6)
  assert np.all(np.diff(found.values[channel]) <= 0)
  assert found.patches.shape == (16, 9, 5, 5, 1)


def _plant(image, patch, top, left, margin: int = 4):
  image[max(0, top - margin):top + 5 + margin,
        max(0, left - margin):left + 5 + margin] = 0
  image[top:top + 5, left:left + 5, 0] = patch
