"""`python -m research.visualize` on a checkpoint the training loop wrote:
every picture index.html links exists and is a real image."""
import html.parser
import pathlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.links = []

  def handle_starttag(self, tag, attrs):
    if tag == 'a':
      self.links.append(dict(attrs)['href'])


def links(index: pathlib.Path) -> list:
  parser = _Links()
  parser.feed(index.read_text())
  return parser.links


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
