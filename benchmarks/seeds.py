r"""N seeds trained together (config.seeds, one vmapped program) against the
same N trained one after another, as whole commands.

  python -m benchmarks.seeds --config=configs/mnist_nielsen.py --seeds=4 \
      [--config.a.b=value ...]   # e.g. --config.data.manual_dir=../shared/data/mnist

Each way runs `python -m research.main` in fresh workdirs and is timed by the
CPU time (user + system) and the wall time of its processes, start-up and
compiling included; the last line is one JSON object with both, and the
ratios. The runs' metrics should agree seed by seed (tests/test_replicas.py
checks that), so only time differs.
"""
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_CONFIG = flags.DEFINE_string('config', 'configs/mnist_nielsen.py',
                              'configs/X.py[:ARG].')
_SEEDS = flags.DEFINE_integer('seeds', 4, 'How many seeds.')


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def timed(commands: list) -> dict:
  cpu, wall = _children_cpu(), time.perf_counter()
  for command in commands:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
  return {'cpu_s': _children_cpu() - cpu, 'wall_s': time.perf_counter() - wall}


def main(argv):
  extra = [a for a in argv[1:] if a.startswith('--config.')]
  seeds = list(range(_SEEDS.value))
  base = [sys.executable, '-m', 'research.main', f'--config={_CONFIG.value}',
          *extra]
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    together = timed([[*base, f'--workdir={root / "together"}',
                       f'--config.seeds=({",".join(map(str, seeds))},)']])
    in_turn = timed([[*base, f'--workdir={root / "alone" / str(s)}',
                      f'--config.seed={s}'] for s in seeds])
  out = {'config': _CONFIG.value, 'overrides': extra, 'seeds': len(seeds),
         'cpus': len(os.sched_getaffinity(0)), 'together': together,
         'in_turn': in_turn,
         'cpu_ratio': in_turn['cpu_s'] / together['cpu_s'],
         'wall_ratio': in_turn['wall_s'] / together['wall_s']}
  print(f'{len(seeds)} seeds of {_CONFIG.value}: together '
        f'{together["cpu_s"]:.1f} CPU s ({together["wall_s"]:.1f} s wall), '
        f'in turn {in_turn["cpu_s"]:.1f} CPU s ({in_turn["wall_s"]:.1f} s '
        f'wall): {out["cpu_ratio"]:.2f}x less CPU time together')
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
