"""`python -m research.visualize` on a checkpoint the training loop wrote:
every picture index.html links exists and is a real image."""
import pathlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers import links, run_cli


@pytest.fixture(scope='module')
def convnet_run(mnist_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('convnet_run')
  run_cli('--config=configs/mnist_convnet.py:test', f'--workdir={workdir}',
          f'--config.data.data_dir={mnist_data_dir}')
  return workdir


def visualize(*args, check=True):
  return run_cli(*args, module='research.visualize', check=check, timeout=600)


def test_demo_renders_every_picture(convnet_run, mnist_data_dir, tmp_path):
  out = tmp_path / 'pictures'
  visualize('demo', f'--workdir={convnet_run}', f'--out={out}',
            f'--data_dir={mnist_data_dir}', '--steps=16', '--frames=3',
            '--size=48', '--iterations=2', '--octaves=2', '--examples=200',
            '--channels=3')
  hrefs = links(out / 'index.html')
  names = {pathlib.Path(h).name for h in hrefs}
  assert {f'class_{c:04d}.png' for c in range(10)} <= names
  assert {'photo.png', 'dream.png', 'zoom.gif', 'filters.png', 'top5.png',
          'occlusion.png', 'saliency.png', 'integrated_gradients.png',
          'grid.png'} <= names
  assert {f'top9_{c:04d}.png' for c in range(3)} <= names
  for href in hrefs:
    with Image.open(out / href) as picture:
      assert picture.size[0] > 0 and picture.size[1] > 0
  assert len(list((out / 'zoom').glob('frame_*.png'))) == 3
  with Image.open(out / 'zoom' / 'zoom.gif') as gif:
    assert gif.n_frames == 3
  # The dream changed the photograph, but not beyond recognition.
  photo = np.asarray(Image.open(out / 'dream' / 'photo.png'), np.float32)
  dreamed = np.asarray(Image.open(out / 'dream' / 'dream.png'), np.float32)
  assert 0 < np.abs(dreamed - photo.mean(-1) if dreamed.ndim == 2
                    else dreamed - photo).mean() < 64


def test_unknown_layer_lists_the_layers(convnet_run, mnist_data_dir, tmp_path):
  proc = visualize('channels', f'--workdir={convnet_run}', f'--out={tmp_path}',
                   f'--data_dir={mnist_data_dir}', '--layer=conv9/relu',
                   check=False)
  assert proc.returncode != 0
  assert "No layer 'conv9/relu'" in proc.stderr
  assert 'conv2/relu' in proc.stderr


def test_missing_checkpoint_says_what_to_do(tmp_path):
  (tmp_path / 'config.json').write_text('{}')
  proc = visualize('classes', f'--workdir={tmp_path}', f'--out={tmp_path}/o',
                   check=False)
  assert proc.returncode != 0
  assert 'train a run with' in proc.stderr


def test_classify_a_trained_run_names_its_classes(convnet_run, mnist_data_dir,
                                                  tmp_path):
  """classify on a run of this repo: MNIST test digits, read back from the
  prepared dataset as PNGs, get their own digit as the top class."""
  import ml_collections
  from research.data import tfds_source
  test = tfds_source.load_splits(ml_collections.ConfigDict({
      'name': 'mnist', 'data_dir': mnist_data_dir, 'manual_dir': None,
      'restore_file_order': False}), {'test': 'test[:8]'})['test']
  paths = []
  for i, (image, label) in enumerate(zip(test['image'], test['label'])):
    path = tmp_path / f'{i}_{label}.png'
    Image.fromarray(image[..., 0]).save(path)
    paths.append(path)
  out = tmp_path / 'logits.npz'
  proc = visualize('classify', f'--workdir={convnet_run}',
                   f'--data_dir={mnist_data_dir}',
                   f'--images={",".join(map(str, paths))}', f'--save={out}')
  lines = [l for l in proc.stdout.splitlines() if l.startswith(str(tmp_path))]
  assert len(lines) == 8
  right = sum(l.split(': ', 1)[1].split(' ')[0] == l.split('_')[-1][0]
              for l in lines)
  assert right >= 6  # the test run is a short one
  assert np.load(out)['logits'].shape == (8, 10)
