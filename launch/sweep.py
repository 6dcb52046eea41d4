r"""Run a config over a grid of values, one workdir per point, and tabulate it.

  python -m launch.sweep --config=configs/street_numbers.py:mnist --sweep=depth \
      --workdir=runs/depth [--parallel=2] [--config.a.b=value ...]
  python -m launch.sweep --config=configs/mnist_nielsen.py \
      --sweep='optimizer.learning_rate=0.5,3.0;seed=0,1' --workdir=runs/lr

`--sweep` is a sweep the config file declares in `get_sweeps(arg)` ({name:
{config key: values}}), or one written out as 'key=v1,v2;key2=v3,...'. Every
combination of values is a point, run as `python -m research.main` in
WORKDIR/<key=value,...>. A point whose results.json exists is skipped; any
other is (re)started with the same command, so a killed one resumes from its
last checkpoint. Points run one at a time, or `--parallel=N` at a time with the
machine's GPUs (or CPU cores) split between them; the runs die with the sweep.
`--launcher=tpu` runs each point on its own Cloud TPU VM through launch/tpu.py
(`--gcs_workdir` holds the runs; results.json comes back to WORKDIR/<point>).

At the end, and with `--report_only` without running anything, every point's
results go to WORKDIR/results.csv, WORKDIR/results.md and a plot (see
launch/sweep_report.py).
"""
import ctypes
import importlib.util
import itertools
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags

from launch import sweep_report
from research import configlib
from research import losses
from research import models
from research import optim
from research import workdir as workdir_lib

_CONFIG = flags.DEFINE_string('config', None, 'configs/X.py[:ARG].',
                              required=True)
_SWEEP = flags.DEFINE_string('sweep', None, 'A sweep the config declares, or '
                             "'key=v1,v2;key2=v3,v4'.", required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'One subfolder per point, '
                               'and the tables and plot.', required=True)
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Points run at once (local).')
_LAUNCHER = flags.DEFINE_enum('launcher', 'local', ['local', 'tpu'],
                              'Where points run.')
_GCS_WORKDIR = flags.DEFINE_string('gcs_workdir', None, 'launcher=tpu: gs:// '
                                   'folder for the points\' runs.')
_TPU_FLAGS = flags.DEFINE_string(
    'tpu_flags', '--zone=us-central2-b --accelerator_type=v4-8 --spot',
    'launcher=tpu: flags for launch.tpu, besides --name and --workdir.')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Only tabulate and '
                                 'plot the points that have finished.')
_METRIC = flags.DEFINE_string('metric', None, 'Metric to plot and rank; '
                              'default: test/sequence_accuracy or test/accuracy.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print each point\'s command.')
_COMPARE = flags.DEFINE_list('compare', [], 'Folders of other sweeps over the '
                             'same field, drawn on this one\'s plot.')
_VMAP_SEEDS = flags.DEFINE_bool(
    'vmap_seeds', False, 'Train the seeds of each point together, one '
    'compiled program (config.seeds, research/replicas.py); each seed\'s '
    'run goes to WORKDIR/<point>/seed=S.')


class SweepError(ValueError):
  """A sweep that cannot be expanded; the message says what to change."""


def load_config_module(spec: str):
  """(module, arg) of 'configs/X.py[:ARG]'."""
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location(
      pathlib.Path(path).stem, path)
  if module_spec is None or not os.path.exists(path):
    raise SweepError(f'No config file {path!r}; pass --config=configs/X.py.')
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise SweepError(f'The config file {path}:{e.lineno} has a syntax error: '
                     f'{e.msg}. Fix that line of the file.') from None
  return module, arg or None


def parse_grid(sweep: str, module, arg) -> tuple[str, dict]:
  """(name, {config key: values}) of --sweep."""
  if '=' in sweep:
    grid = {}
    for part in filter(None, sweep.split(';')):
      key, _, values = part.partition('=')
      grid[key.strip()] = [sweep_report.number_or_text(v.strip())
                           for v in values.split(',')]
    return next(iter(grid)).split('.')[-1], grid
  declared = module.get_sweeps(arg) if hasattr(module, 'get_sweeps') else {}
  if sweep not in declared:
    raise SweepError(f'{module.__file__} declares no sweep {sweep!r} (it has: '
                     f'{", ".join(declared) or "none"}). Pass one of those, '
                     "or --sweep='key=v1,v2;key2=v3'.")
  return sweep, declared[sweep]


def expand(grid: dict) -> list[dict]:
  """Every combination of the grid's values, first key varying slowest."""
  keys = list(grid)
  return [dict(zip(keys, values))
          for values in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict) -> str:
  """'hidden_layers=3,seed=0': last key parts, unless two would collide."""
  short = [k.split('.')[-1] for k in point]
  keys = short if len(set(short)) == len(short) else list(point)
  return ','.join(f'{k}={v}' for k, v in zip(keys, point.values()))


def point_args(point: dict) -> list[str]:
  return [f'--config.{k}={v}' for k, v in point.items()]


def _die_with_parent_and_pin(cpus):
  """For Popen's preexec_fn: a SIGKILLed sweep takes its runs with it, and a
  CPU run sees only its share of the cores (XLA sizes its threads to them)."""
  def preexec():
    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if cpus:
      os.sched_setaffinity(0, cpus)
  return preexec


def device_slots(parallel: int) -> list[dict]:
  """What each of `parallel` concurrent runs may use: GPUs when there are
  any (CUDA_VISIBLE_DEVICES), else CPU cores."""
  gpus = []
  if shutil.which('nvidia-smi'):
    listing = subprocess.run(['nvidia-smi', '-L'], capture_output=True,
                             text=True, check=False).stdout
    gpus = [str(i) for i, line in enumerate(listing.splitlines())
            if line.startswith('GPU ')]
  if gpus:
    if len(gpus) < parallel:
      raise SweepError(f'--parallel={parallel} exceeds the {len(gpus)} GPUs.')
    share = len(gpus) // parallel
    return [{'env': {'CUDA_VISIBLE_DEVICES': ','.join(gpus[i * share:
                                                           (i + 1) * share])},
             'cpus': None} for i in range(parallel)]
  cores = sorted(os.sched_getaffinity(0))
  if parallel == 1:
    return [{'env': {}, 'cpus': None}]
  if len(cores) < parallel:
    raise SweepError(f'--parallel={parallel} exceeds the {len(cores)} cores.')
  share = len(cores) // parallel
  return [{'env': {}, 'cpus': set(cores[i * share:(i + 1) * share])}
          for i in range(parallel)]


def local_command(config: str, workdir: pathlib.Path, args: list) -> list:
  return [sys.executable, '-m', 'research.main', f'--config={config}',
          f'--workdir={workdir}', *args]


def tpu_command(config: str, name: str, index: int, results_to, args: list):
  gcs = _GCS_WORKDIR.value
  if not gcs or not gcs.startswith('gs://'):
    raise SweepError('--launcher=tpu needs --gcs_workdir=gs://BUCKET/DIR.')
  vm = f'sweep-{index}-{os.getpid()}'
  return [sys.executable, '-m', 'launch.tpu', f'--name={vm}',
          *_TPU_FLAGS.value.split(), f'--config={config}',
          f'--workdir={gcs.rstrip("/")}/{name}', f'--results_to={results_to}',
          *args]


def run_points(jobs: list, parallel: int) -> dict:
  """Runs (name, argv, workdir) jobs, `parallel` at a time; {name: exit code}."""
  slots = device_slots(parallel) if _LAUNCHER.value == 'local' else [
      {'env': {}, 'cpus': None}] * parallel
  pending, running, codes = list(jobs), {}, {}
  while pending or running:
    free = [i for i in range(len(slots)) if i not in running]
    while pending and free:
      name, argv, workdir = pending.pop(0)
      i = free.pop(0)
      slot = slots[i]
      workdir.mkdir(parents=True, exist_ok=True)
      log = open(workdir / 'sweep.log', 'a')
      print(f'start {name}  (log: {workdir / "sweep.log"})', flush=True)
      proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, **slot['env']},
                              preexec_fn=_die_with_parent_and_pin(slot['cpus']))
      running[i] = (name, proc, log, time.time())
    time.sleep(0.5)
    for i, (name, proc, log, start) in list(running.items()):
      if proc.poll() is not None:
        log.close()
        codes[name] = proc.returncode
        state = 'done' if proc.returncode == 0 else (
            f'FAILED (exit {proc.returncode})')
        print(f'{state} {name} in {time.time() - start:.0f} s', flush=True)
        del running[i]
  return codes


def check_points(module, arg, extra: list, points: list):
  """Builds every point's config as research.main would and runs the loop's
  checks on it (keys, types, values, model fields, loss, optimizer), so a
  sweep that cannot run stops before any point starts."""
  for point in points:
    try:
      config = module.get_config(arg)
      for override in extra:
        key, _, value = override.removeprefix('--config.').partition('=')
        configlib.override(config, key, value)
      for key, value in point.items():
        configlib.override(config, key, value)
      configlib.validate(config)
      models.build(config.model)
      losses.get(config.loss)
      optim.create(config.optimizer, 1, 1)
    except configlib.ConfigError as e:
      raise SweepError(f'Point {point_name(point)}: {e} No point was '
                       'started.') from None


def _last_error(log: pathlib.Path) -> str:
  """The point's own error: the last 'Error: ...' line of its log, else its
  last line."""
  if not log.exists():
    return 'no log'
  lines = [l for l in log.read_text(errors='replace').splitlines() if l]
  errors = [l for l in lines if l.startswith('Error: ')]
  return (errors or lines or ['(empty log)'])[-1][:500]


def main(argv):
  extra = [a for a in argv[1:] if a.startswith('--config.')]
  unknown = [a for a in argv[1:] if not a.startswith('--config.')]
  if unknown:
    raise app.UsageError(f'Unknown arguments: {" ".join(unknown)}')
  try:
    module, arg = load_config_module(_CONFIG.value)
    sweep, grid = parse_grid(_SWEEP.value, module, arg)
    points = expand(grid)
    check_points(module, arg, extra, points)
  except (SweepError, configlib.ConfigError) as e:
    sys.exit(f'Error: {e}')
  workdir = pathlib.Path(_WORKDIR.value).resolve()
  try:
    with workdir_lib.lock(workdir_lib.prepare(workdir), 'launch.sweep'):
      run_sweep(workdir, module, sweep, points, extra)
  except workdir_lib.WorkdirError as e:
    sys.exit(f'Error: {e}')


def _without_seed(point: dict) -> dict:
  return {k: v for k, v in point.items() if k != 'seed'}


def point_dir(workdir: pathlib.Path, point: dict) -> pathlib.Path:
  """Where a point's run lives: WORKDIR/<point>, or with --vmap_seeds
  WORKDIR/<point less its seed>/seed=S (research/replicas.py's layout)."""
  if _VMAP_SEEDS.value:
    return (workdir / (point_name(_without_seed(point)) or 'all')
            / f'seed={point["seed"]}')
  return workdir / point_name(point)


def jobs_of(workdir, points: list, extra: list) -> tuple[list, list]:
  """(jobs (name, argv, workdir, points), names of finished points)."""
  groups = {}
  for point in points:
    key = point_name(_without_seed(point)) if _VMAP_SEEDS.value else (
        point_name(point))
    groups.setdefault(key, []).append(point)
  jobs, done = [], []
  for index, (name, group) in enumerate(groups.items()):
    if all((point_dir(workdir, p) / 'results.json').exists() for p in group):
      done.extend(point_name(p) for p in group)
      continue
    if _VMAP_SEEDS.value:
      seeds = ','.join(str(p['seed']) for p in group)
      args = [*extra, *point_args(_without_seed(group[0])),
              f'--config.seeds=({seeds},)']
      jdir = workdir / (name or 'all')
    else:
      args, jdir = [*extra, *point_args(group[0])], workdir / name
    argv_ = (local_command(_CONFIG.value, jdir, args)
             if _LAUNCHER.value == 'local' else
             tpu_command(_CONFIG.value, name, index, jdir / 'results.json',
                         args))
    jobs.append((name or 'all', argv_, jdir, group))
  return jobs, done


def run_sweep(workdir, module, sweep, points, extra):
  if _VMAP_SEEDS.value and (_LAUNCHER.value != 'local'
                            or 'seed' not in points[0]):
    sys.exit('Error: --vmap_seeds trains the seeds of each point together: '
             'it needs a sweep over seed (seed=0,1,...) and the local '
             'launcher.')
  jobs, done = jobs_of(workdir, points, extra)
  print(f'sweep {sweep!r}: {len(points)} points, {len(done)} finished '
        f'earlier{" (skipped)" if done else ""}, {len(jobs)} to run'
        + (' (seeds vmapped)' if _VMAP_SEEDS.value else ''), flush=True)
  codes = {}
  if _DRY_RUN.value:
    for name, argv_, _, _ in jobs:
      print(f'# {name}\n{" ".join(argv_)}')
    return
  if not _REPORT_ONLY.value:
    try:
      job_codes = run_points([j[:3] for j in jobs], _PARALLEL.value)
    except SweepError as e:
      sys.exit(f'Error: {e}')
    codes = {point_name(p): job_codes[name]
             for name, _, _, group in jobs if name in job_codes
             for p in group}
  command = ' '.join(['python -m launch.sweep',
                      *map(shlex.quote, sys.argv[1:])])
  report = sweep_report.write(workdir, sweep, points, point_name, module,
                              _METRIC.value, command, _COMPARE.value, codes,
                              lambda p: point_dir(workdir, p))
  print(report)
  failed = [j for j in jobs if any(codes.get(point_name(p)) for p in j[3])]
  if failed:
    sys.exit(f'{len(failed)} run(s) failed:\n' + '\n'.join(
        f'  {name}: {_last_error(jdir / "sweep.log")}'
        for name, _, jdir, _ in failed)
             + '\nFix what they say, then rerun the same command: finished '
             'points are kept, the others start again or resume.')


if __name__ == '__main__':
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
