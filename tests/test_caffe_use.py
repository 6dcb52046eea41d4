"""Imported BVLC nets wherever a trained net is used: `classify` and every
picture command of research.visualize, fine-tuning through
`--config.init_from`, and evaluation only (0 epochs, AlexNet's 10 crops)."""
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from research.caffe import bvlc
from research.data import idx
from tests import caffe_fixture
from tests.helpers import MNIST_FILES, read_jsonl, run_cli
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


def upscaled_digits(count: int, size: int) -> np.ndarray:
  """MNIST validation digits (Nielsen's split: training images 50,000 on) as
  Caffe's input: (N, 3, size, size), BGR in 0..255 minus the mean."""
  digits = idx.read_idx(str(MNIST_FILES / 'train-images-idx3-ubyte.gz'))
  images = np.stack([np.asarray(Image.fromarray(d).resize((size, size),
                                                          Image.BILINEAR))
                     for d in digits[50_000:50_000 + count]]).astype(np.float32)
  return (np.repeat(images[:, None], 3, 1)
          - np.float32(bvlc.MEAN_BGR)[None, :, None, None])


@pytest.mark.slow  # 2 minutes on 2 cores
def test_init_from_fine_tunes_to_another_class_count(tmp_path, mnist_data_dir):
  """An AlexNet caffemodel, its 1000-way fc8 re-initialised for MNIST's 10
  classes, fine-tunes: 40 steps of 32 upscaled digits recognise digits it
  never saw. Random weights stand in for BVLC's, rescaled (through OpenCV)
  to pass activations of order 1, as trained ones do; unscaled, their
  activations grow layer by layer and the loss diverges. Measured: test
  accuracy 0.66 on 256 digits (chance 0.1), loss 2.4 -> 1.0."""
  model, deploy, blobs = caffe_fixture.write(tmp_path, 'alexnet', seed=7)
  caffe_fixture.calibrate('alexnet', blobs, model, deploy,
                          upscaled_digits(16, bvlc.INPUT_SIZE['alexnet']))
  proc = run_cli('--config=configs/alexnet.py:mnist,test',
                 f'--workdir={tmp_path / "run"}',
                 f'--config.data.data_dir={mnist_data_dir}',
                 f'--config.init_from={model}', '--config.data.image_size=227',
                 "--config.data.train_split=train[:1280]",
                 "--config.data.eval_splits={'test': 'test[:256]'}",
                 '--config.num_epochs=1', '--config.checkpoint_every_epochs=1',
                 '--config.optimizer.name=adam',
                 '--config.optimizer.learning_rate=1e-4',
                 '--config.optimizer.weight_decay=0', timeout=900)
  assert 'fc8/bias, fc8/kernel' in proc.stderr  # said, not silent
  assert "config.model.lrn 'paper' -> 'caffe'" in proc.stderr
  config = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert config['model']['lrn'] == 'caffe'
  assert config['data']['pixel_mean'] == list(bvlc.MEAN_RGB)
  results = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert results['step'] == 40
  print(f'test accuracy after 40 steps: {results["test/accuracy"]}')
  assert results['test/accuracy'] >= 0.4, results
  # It learned from the file's weights, not afresh: Adam moves a parameter
  # at most (1 - b1) / sqrt(1 - b2) = 3.2 times the rate a step, so after
  # 40 steps every array but fc8 is within 40 * 3.2e-4 of the file's.
  from flax import traverse_util
  from research import checkpoints, init_from
  start = traverse_util.flatten_dict(init_from.load(model).params, sep='/')
  end = traverse_util.flatten_dict(
      checkpoints.load_latest(tmp_path / 'run')[0]['params'], sep='/')
  moved = {name: float(np.abs(end[name] - start[name]).max())
           for name in end if not name.startswith('fc8')}
  assert len(moved) == 14 and max(moved.values()) <= 40 * 3.2e-4, moved
  assert min(moved.values()) > 0, moved


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
  for name in ('validation', 'validation_10crop'):  # centre crop, 10 crops
    assert results[f'{name}/accuracy'] in {i / 5 for i in range(6)}
    assert np.isfinite(results[f'{name}/loss'])
  rows = read_jsonl(tmp_path / 'metrics.jsonl') if (
      tmp_path / 'metrics.jsonl').exists() else []
  assert not any('train/loss' in r for r in rows)
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['model']['lrn'] == 'caffe'
