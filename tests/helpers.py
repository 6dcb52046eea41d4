"""What the tests share: paths, running a command as a user would, reading
what a run wrote, loading a config file, an index.html's links."""
import html.parser
import json
import os
import pathlib
import subprocess
import sys

from research import configlib
from research import xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_FILES = REPO.parent / 'shared' / 'data' / 'mnist'


def run_cli(*args, devices: int = 1, timeout: float = 300, check: bool = True,
            cwd=REPO, module: str = 'research.main'
            ) -> subprocess.CompletedProcess:
  """Runs `python -m MODULE ARGS` with `devices` simulated CPU devices."""
  env = dict(os.environ, PYTHONPATH=str(REPO),
             XLA_FLAGS=xla_flags.with_host_devices(
                 os.environ.get('XLA_FLAGS', ''), devices),
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-m', module, *args],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f'exit {proc.returncode}\n{proc.stderr[-4000:]}')
  return proc


def read_jsonl(path) -> list:
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def load_config(name, arg=None):
  """configs/NAME.py's get_config(arg)."""
  module, _ = configlib.config_module(REPO / 'configs' / f'{name}.py')
  return module.get_config(arg)


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.links = []

  def handle_starttag(self, tag, attrs):
    if tag == 'a':
      self.links.append(dict(attrs)['href'])


def links(index: pathlib.Path) -> list:
  """The hrefs of an index.html."""
  parser = _Links()
  parser.feed(index.read_text())
  return parser.links
