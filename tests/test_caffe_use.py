"""Imported BVLC nets wherever a trained net is used: `classify` and every
picture command of research.visualize, fine-tuning through
`--config.init_from`, and evaluation only (0 epochs, AlexNet's 10 crops)."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from research.caffe import bvlc
from tests import caffe_fixture
from tests.helpers import read_jsonl, run_cli
from tests.helpers import links

cv2 = pytest.importorskip('cv2')


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  """{kind: caffemodel}, random weights scaled for 0..255 photos."""
  root = tmp_path_factory.mktemp('bvlc')
  return {kind: caffe_fixture.write(root, kind, seed=7, pixel_std=70.0)[0]
          for kind in ('alexnet', 'googlenet')}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """Ten photos of assorted sizes, and one at GoogLeNet's input size."""
  root = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  folder = root / 'folder'
  folder.mkdir()
  for i in range(10):
    Image.fromarray(rng.integers(0, 256, (180 + 9 * i, 260, 3),
                                 np.uint8)).save(folder / f'{i:02d}.png')
  exact = root / 'exact.png'
  Image.fromarray(rng.integers(0, 256, (224, 224, 3), np.uint8)).save(exact)
  return folder, exact


def visualize(*args, check=True):
  return run_cli(*args, module='research.visualize', check=check, timeout=900)


def test_classify_prints_names_and_saves_logits(weights, photos, tmp_path):
  folder, exact = photos
  out = tmp_path / 'logits.npz'
  proc = visualize('classify', f'--weights={weights["googlenet"]}',
                   f'--images={exact},{folder / "03.png"}', f'--save={out}')
  lines = [l for l in proc.stdout.splitlines() if l.startswith(str(exact))]
  assert len(lines) == 1 and lines[0].count('(') == 5  # five classes
  logits = np.load(out)['logits']
  assert logits.shape == (2, 1000)
  # The image at the input size goes in as it is: OpenCV, fed the same
  # pixels as Caffe would see them, gives the same logits.
  model, deploy = weights['googlenet'], model_deploy(weights['googlenet'])
  reference = cv2.dnn.readNetFromCaffe(str(deploy), str(model))
  bgr = np.asarray(Image.open(exact), np.float32)[..., ::-1] - np.float32(
      bvlc.MEAN_BGR)
  reference.setInput(np.ascontiguousarray(bgr.transpose(2, 0, 1)[None]))
  want = reference.forward('loss3/classifier')[0]
  assert np.abs(logits[0] - want).max() <= 1e-4 * np.abs(want).max()
  # Names: the top class printed is the argmax's ImageNet name.
  from research.data import imagenet_classes
  assert lines[0].split(': ', 1)[1].startswith(
      imagenet_classes.names()[int(np.argmax(logits[0]))] + ' (')


def model_deploy(model: pathlib.Path) -> pathlib.Path:
  return model.with_name(model.name.split('_')[0] + '_deploy.prototxt')


@pytest.mark.slow  # 5 minutes on 2 cores
@pytest.mark.parametrize('kind', ['googlenet', 'alexnet'])
def test_every_picture_command_runs_on_imported_weights(weights, photos,
                                                        tmp_path, kind):
  folder, _ = photos
  out = tmp_path / 'pictures'
  visualize('demo', f'--weights={weights[kind]}', f'--out={out}',
            f'--images={folder}', '--steps=2', '--frames=2', '--size=64',
            '--iterations=1', '--octaves=2', '--examples=10', '--channels=2',
            '--panel=2', '--attribution_steps=2', '--classes=dumbbell,1')
  index = out / 'index.html'
  names = {pathlib.Path(h).name for h in links(index)}
  assert {'class_0543.png', 'class_0001.png', 'photo.png', 'dream.png',
          'zoom.gif', 'filters.png', 'top5.png', 'occlusion.png',
          'saliency.png', 'integrated_gradients.png', 'grid.png',
          'top9_0000.png', 'top9_0001.png'} <= names
  page = index.read_text()
  assert 'dumbbell' in page  # ImageNet names in the captions
  if kind == 'googlenet':
    assert 'inception_4c/output' in page  # google/deepdream's layer


@pytest.mark.slow
def test_init_from_fine_tunes_to_another_class_count(weights, tmp_path,
                                                     mnist_data_dir):
  """Imported AlexNet, its 1000-way fc8 re-initialised for MNIST's 10
  classes, trains and evaluates. The fixture's weights are random, so 16
  steps can only show the loss falling, not digits recognised."""
  proc = run_cli('--config=configs/alexnet.py:mnist,test',
                 f'--workdir={tmp_path}', f'--config.data.data_dir={mnist_data_dir}',
                 f'--config.init_from={weights["alexnet"]}',
                 '--config.data.image_size=227', '--config.optimizer.name=adam',
                 '--config.optimizer.learning_rate=1e-4',
                 '--config.optimizer.weight_decay=0', '--config.log_every_steps=2',
                 timeout=600)
  assert 'fc8/bias, fc8/kernel' in proc.stderr  # said, not silent
  assert "config.model.lrn 'paper' -> 'caffe'" in proc.stderr
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['model']['lrn'] == 'caffe'
  assert config['data']['pixel_mean'] == list(bvlc.MEAN_RGB)
  losses = [r['train/loss'] for r in read_jsonl(tmp_path / 'metrics.jsonl')
            if 'train/loss' in r]
  assert losses[-1] < 0.5 * losses[0]
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['step'] == 16 and 0 <= results['test/accuracy'] <= 1


def test_zero_epochs_evaluate_an_imported_alexnet_with_ten_crops(
    weights, tmp_path, ilsvrc_dirs):
  data_dir, manual_dir = ilsvrc_dirs
  run_cli('--config=configs/alexnet.py:test', f'--workdir={tmp_path}',
          f'--config.data.data_dir={data_dir}',
          f'--config.data.manual_dir={manual_dir}',
          f'--config.init_from={weights["alexnet"]}', '--config.num_epochs=0',
          '--config.data.image_size=227', '--config.data.resize_to=256')
  results = json.loads((tmp_path / 'results.json').read_text())
  assert results['step'] == 0 and results['train_seconds'] == 0
  assert results['validation/accuracy'] in {i / 5 for i in range(6)}
  assert np.isfinite(results['validation/loss'])
  rows = read_jsonl(tmp_path / 'metrics.jsonl') if (
      tmp_path / 'metrics.jsonl').exists() else []
  assert not any('train/loss' in r for r in rows)
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['data']['eval_crops'] == 10 and config['model']['lrn'] == 'caffe'
