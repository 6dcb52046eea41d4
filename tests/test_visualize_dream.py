"""DeepDream (research/visualize/dream.py) on the planted-digit convnets:
tiles and octaves keep shapes and compile the gradient once, tiled gradients
are the true gradients put back in their places, dreaming raises the
objective, and the zoom video writes its frames and GIF.

Compilations dominate the time here, so the tests share one gradient and a
few image sizes (64x80 canvas, 45x77 and 20x24 photos, 32-pixel tiles)."""
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from research.visualize import dream
from research.visualize import objectives

LAYER = 'conv2/relu'


@pytest.fixture(scope='module')
def net(planted_nets):
  return planted_nets[2]


@pytest.fixture(scope='module')
def gradient(net):
  """DeepDream's gradient of LAYER for grey images: 4 tiles a call."""
  return dream.tiled_gradient(net, LAYER, tiles_per_call=4)


@pytest.fixture(scope='module')
def canvas(planted_nets):
  """Six test digits side by side, cut to a (64, 80, 1) 'photo'."""
  images = planted_nets[1].images[:6]
  rows = [np.concatenate(list(images[r * 3:r * 3 + 3]), axis=1) for r in (0, 1)]
  return np.concatenate(rows, axis=0)[:, :80]


def _photo(shape, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


def test_octave_shapes_and_jitter():
  assert dream.octave_shapes((64, 80, 1)) == [(64, 80), (46, 57), (33, 41),
                                              (24, 29)]
  assert dream.octave_shapes((45, 77), octave_n=1) == [(45, 77)]
  assert dream.default_jitter((32, 32)) == 5
  assert dream.default_jitter((512, 512)) == 32


def test_zero_iterations_return_the_input_exactly(net, canvas, gradient):
  out = dream.deepdream(net, canvas, None, jax.random.key(0), iter_n=0,
                        gradient=gradient)
  assert out.shape == canvas.shape and out.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(out), canvas)


def test_shapes_kept_and_gradient_compiled_once(net):
  # An RGB photo through the grey net. Its octaves are odd-sized, taller and
  # wider than a tile, or one tile's height and less; a second photo is
  # smaller than a tile. All reuse the one compiled gradient.
  rgb = dream.tiled_gradient(net, LAYER, channels=3, tiles_per_call=4)
  for shape, octave_n in [((45, 77, 3), 3), ((20, 24, 3), 1)]:
    photo = _photo(shape)
    out = dream.deepdream(net, photo, None, jax.random.key(1), iter_n=1,
                          octave_n=octave_n, gradient=rgb)
    assert out.shape == shape
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float(jnp.abs(out - photo).max()) > 0
  assert rgb.fn._cache_size() == 1


def test_one_tile_gradient_is_the_direct_gradient(net, planted_nets, gradient):
  objective = objectives.layer(LAYER)
  image = jnp.asarray(planted_nets[1].images[0])
  value, grad = gradient(image)
  direct = jax.jit(jax.value_and_grad(
      lambda x: objective(net.activations(x[None]))))
  direct_value, direct_grad = direct(image)
  np.testing.assert_allclose(value, direct_value, rtol=1e-5)
  scale = float(jnp.abs(direct_grad).max())
  assert scale > 0
  np.testing.assert_allclose(grad, direct_grad, rtol=1e-4, atol=1e-5 * scale)


def test_tiles_reassemble_in_place(net):
  # Half the summed squared input: each pixel's gradient is its own value,
  # so a misplaced, transposed or wrongly rolled tile shows. An RGB image
  # goes to the grey net as its channel mean: its gradient is mean / 3.
  squares = objectives.Objective(
      lambda acts: 0.5 * jnp.sum(jnp.square(acts['input'])), 'squares')
  grey = dream.tiled_gradient(net, squares, tiles_per_call=4)
  rgb = dream.tiled_gradient(net, squares, channels=3, tiles_per_call=4)
  for gradient, shape, shift in [(grey, (45, 77, 1), (7, -13)),
                                 (grey, (20, 24, 1), (3, 5)),
                                 (rgb, (45, 77, 3), (-30, 40))]:
    photo = _photo(shape, seed=2)
    _, grad = gradient(photo, shift)
    expected = np.broadcast_to(photo.mean(-1, keepdims=True) / shape[-1],
                               shape)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


def test_dreaming_raises_the_objective(net, planted_nets, canvas, gradient):
  objective = objectives.layer(LAYER)
  score = lambda x: float(objective(net.activations(jnp.asarray(x)[None])))
  digit = planted_nets[1].images[0]
  dreamed = dream.deepdream(net, digit, None, jax.random.key(2), iter_n=5,
                            octave_n=2, gradient=gradient)
  print('one tile', score(digit), '->', score(dreamed))
  assert score(dreamed) > 1.5 * score(digit)
  # Larger than a tile: the mean objective of its (unrolled) tiles rises.
  dreamed = dream.deepdream(net, canvas, None, jax.random.key(3), iter_n=5,
                            octave_n=2, gradient=gradient)
  before, after = float(gradient(canvas)[0]), float(gradient(dreamed)[0])
  print('canvas', before, '->', after)
  assert after > 1.3 * before


def test_same_key_same_dream(net, canvas, gradient):
  run = lambda seed: np.asarray(dream.deepdream(
      net, canvas, None, jax.random.key(seed), iter_n=2, octave_n=2,
      gradient=gradient))
  np.testing.assert_array_equal(run(4), run(4))
  assert not np.array_equal(run(4), run(5))


def test_zoom_crops_the_centre():
  ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None],
                 (30, 1, 1))
  zoomed = np.asarray(dream.zoom(ramp, 0.05))
  assert zoomed.shape == ramp.shape
  np.testing.assert_allclose(zoomed.mean(), ramp.mean(), atol=1e-6)  # centred
  # The middle 95% stretched to the full width: the ramp 0.95 times as steep.
  slope = np.diff(zoomed[0, 5:-5, 0]).mean() / np.diff(ramp[0, 5:-5, 0]).mean()
  np.testing.assert_allclose(slope, 0.95, rtol=1e-4)
  np.testing.assert_allclose(dream.zoom(ramp, 0.0), ramp, atol=1e-6)


def test_zoom_dream_writes_frames_and_gif(net, canvas, gradient, tmp_path):
  seen = []
  paths = dream.zoom_dream(net, canvas, None, jax.random.key(6), tmp_path,
                           frames=3, iter_n=1, octave_n=2, gradient=gradient,
                           progress=lambda n, frame: seen.append((n, frame)))
  names = [f'frame_{n:04d}.png' for n in range(3)]
  assert [p.name for p in paths] == names + ['zoom.gif']
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + ['zoom.gif'])
  assert [n for n, _ in seen] == [0, 1, 2]
  for path, (_, frame) in zip(paths, seen):
    assert frame.shape == canvas.shape
    np.testing.assert_array_equal(np.asarray(Image.open(path)),
                                  np.round(frame[..., 0] * 255))
  assert not np.array_equal(seen[0][1], seen[1][1])
  with Image.open(paths[-1]) as gif:
    assert gif.n_frames == 3 and gif.size == (80, 64)
  # Every test above used this gradient, on every size: still one program.
  assert gradient.fn._cache_size() == 1
