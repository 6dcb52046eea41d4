"""README's "Errors" table is true: each row's command, run as a user would
in the state its CAPS name, fails with one paragraph that contains the row's
message, no traceback, and changes nothing that was already written."""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from research import workdir as workdir_lib
from tests.helpers import MNIST_FILES, REPO, run_cli


def rows() -> list[tuple[str, str, str]]:
  """(mistake, command, message) of every row of README's Errors table."""
  text = (REPO / 'README.md').read_text()
  section = text.split('\n## Errors\n', 1)[1].split('\n## ', 1)[0]
  out = []
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) == 3 and cells[1].startswith('`'):
      out.append((cells[0], cells[1].strip('`'), cells[2].strip('`')))
  return out


def _unshared(mount: str, options: str) -> list[str]:
  """A prefix that runs a command with a tmpfs mounted at `mount`."""
  return ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c',
          f'mount -t tmpfs -o {options} tmpfs {shlex.quote(mount)} && '
          'exec "$@"', 'sh']


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  run = tmp_path_factory.mktemp('finished')
  run_cli('--config=configs/neuron.py:test', f'--workdir={run}')
  return run


class State:
  """Makes the paths a row's CAPS name, and the environment it runs in."""

  def __init__(self, tmp: pathlib.Path, mnist_data_dir: str, finished_run):
    self.tmp, self.finished = tmp, finished_run
    self.env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
                    TF_CPP_MIN_LOG_LEVEL='2', TFDS_DATA_DIR=mnist_data_dir)
    self.prefix, self.watched, self.fresh = [], [], []

  def path(self, name: str) -> str:
    p = self.tmp / name
    if name == 'runs':
      self.fresh.append(p)
    elif name == 'BROKEN.py':
      p.write_text('def get_config(:\n  pass\n')
    elif name == 'A_FILE':
      p.write_text('notes\n')
      self.watched.append(p)
    elif name in ('READ_ONLY_DIR', 'FULL_DISK_DIR'):
      p.mkdir()
      self.prefix = _unshared(str(p), 'ro' if name == 'READ_ONLY_DIR'
                              else 'size=24k')
    elif name in ('RUN', 'RUN_WITH_DAMAGED_CHECKPOINT', 'BUSY_RUN'):
      shutil.copytree(self.finished, p)
      if name == 'RUN_WITH_DAMAGED_CHECKPOINT':
        for f in (p / 'checkpoints' / '300' / 'state').rglob('d/*'):
          f.write_bytes(f.read_bytes()[:20])
      self.watched.append(p)
    elif name == 'EMPTY_DIR':
      p.mkdir()
      self.env['TFDS_DATA_DIR'] = str(self.tmp / 'unprepared')
    elif name == 'CHANGED_MNIST':
      shutil.copytree(MNIST_FILES, p, ignore=shutil.ignore_patterns('*.md'))
      labels = p / 't10k-labels-idx1-ubyte.gz'
      data = bytearray(labels.read_bytes())
      data[-1] ^= 0xFF
      labels.write_bytes(bytes(data))
      self.env['TFDS_DATA_DIR'] = str(self.tmp / 'unprepared')
    elif name == 'DAMAGED_DATA_DIR':
      shutil.copytree(self.env['TFDS_DATA_DIR'], p)
      test = next(p.rglob('mnist-test.tfrecord-*'))
      data = bytearray(test.read_bytes())
      data[len(data) // 2] ^= 0xFF
      test.write_bytes(bytes(data))
    elif name == 'TRUNCATED.caffemodel':
      from tests import caffe_fixture
      model, _, _ = caffe_fixture.write(self.tmp, 'googlenet')
      p.write_bytes(model.read_bytes()[:1_000_000])
    elif name == 'cat.png':
      from PIL import Image
      Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)
    return str(p)


def snapshot(paths) -> dict:
  out = {}
  for p in paths:
    files = [p] if p.is_file() else sorted(f for f in p.rglob('*')
                                           if f.is_file() and f.name != '.lock')
    out.update({str(f): f.read_bytes() for f in files})
  return out


@pytest.mark.parametrize('mistake,command,message', rows(),
                         ids=[r[0] for r in rows()])
def test_each_row_says_what_it_says(mistake, command, message, tmp_path,
                                    mnist_data_dir, finished_run):
  state = State(tmp_path, mnist_data_dir, finished_run)
  words = shlex.split(command)
  env_words = [w for w in words if re.fullmatch(r'[A-Z_]+=.*', w)]
  words = words[len(env_words):]
  for word in env_words:
    key, _, value = word.partition('=')
    state.env[key] = value
  assert words[0] == 'python'
  caps = re.compile(r'\b(runs|[A-Z][A-Z_]+(?:\.[a-z]+)?|cat\.png)(?=/|\b)')
  argv = [sys.executable] + [caps.sub(lambda m: state.path(m.group(1)), w)
                             for w in words[1:]]
  lock = None
  if any('BUSY_RUN' in w for w in words):
    lock = workdir_lib.lock(tmp_path / 'BUSY_RUN', 'research.main')
    lock.__enter__()
  before = snapshot(state.watched)
  try:
    proc = subprocess.run(state.prefix + argv, cwd=REPO, env=state.env,
                          capture_output=True, text=True, timeout=600)
  finally:
    if lock:
      lock.__exit__(None, None, None)
  said = proc.stderr + proc.stdout
  assert proc.returncode != 0, said[-2000:]
  assert 'Traceback' not in said, said[-3000:]
  assert message in said, said[-2000:]
  assert snapshot(state.watched) == before, mistake
  for fresh in state.fresh:  # a refused run leaves no empty workdir behind
    assert not fresh.exists() or any(fresh.rglob('*')), fresh


def test_the_table_covers_the_cases():
  mistakes = {r[0] for r in rows()}
  assert len(mistakes) >= 20
  for needed in ('no such config file', 'syntax error in a config',
                 'unknown `:ARG`', 'workdir is a file', 'read-only workdir',
                 'disk full', 'prepared data damaged',
                 'checkpoint damaged, visualizing', 'unknown dataset',
                 'workdir in use'):
    assert needed in mistakes, needed
