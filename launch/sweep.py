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
machine's GPUs (or CPU cores) split between them. SIGTERM or Ctrl-C to the
sweep reaches every running point, which saves a checkpoint; the sweep waits
for them and exits, and rerunning it resumes every point. A SIGKILLed sweep
takes its runs with it.

`--launcher=slurm` submits one Slurm job array instead, a task per unfinished
point running launch/slurm.sbatch (so a preempted point requeues itself and
resumes), at most `--parallel` at once when given, with `--slurm_flags` for
sbatch (partition, time, GPUs), plus a job that writes the report when the
array has finished. Rerunning the same command resubmits only the points
without results. `--launcher=tpu` runs each point on its own Cloud TPU VM
through launch/tpu.py (`--gcs_workdir` holds the runs; results.json comes
back to WORKDIR/<point>).

At the end, and with `--report_only` without running anything, every point's
results go to WORKDIR/results.csv, WORKDIR/results.md and a plot (see
launch/sweep_report.py). `--earlier=FOLDER` keeps the points an earlier
report of the same sweep lists as finished (its results.csv: the workdir of
another machine, or a copy committed under results/): they are not rerun,
and the table takes their rows from that file, naming it.
"""
import ctypes
import itertools
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import NamedTuple

from absl import app
from absl import flags

from launch import slurm_array
from launch import sweep_report
from research import configlib
from research import errors
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
_PARALLEL = flags.DEFINE_integer('parallel', 1, 'Points run at once '
                                 '(slurm: only when given; default all).')
_LAUNCHER = flags.DEFINE_enum('launcher', 'local', ['local', 'slurm', 'tpu'],
                              'Where points run.')
_SLURM_FLAGS = flags.DEFINE_string(
    'slurm_flags', '', "launcher=slurm: sbatch flags for every point's task, "
    "e.g. '--partition=gpu --gpus-per-node=1 --time=4:00:00'.")
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
_EARLIER = flags.DEFINE_list('earlier', [], 'Folders with the results.csv of '
                             'an earlier report of this sweep: its finished '
                             'points are not rerun and are tabulated from it.')
_VMAP_SEEDS = flags.DEFINE_bool(
    'vmap_seeds', False, 'Train the seeds of each point together, one '
    'compiled program (config.seeds, research/replicas.py); each seed\'s '
    'run goes to WORKDIR/<point>/seed=S.')


class SweepError(errors.UserError, ValueError):
  """A sweep that cannot be expanded; the message says what to change."""


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


class Options(NamedTuple):
  """The sweep's command line, read once in `main`."""
  config: str
  launcher: str = 'local'
  parallel: int = 1
  parallel_given: bool = False
  vmap_seeds: bool = False
  gcs_workdir: str | None = None
  tpu_flags: str = ''
  slurm_flags: str = ''
  dry_run: bool = False
  report_only: bool = False
  metric: str | None = None
  compare: tuple = ()
  earlier: tuple = ()


class Job(NamedTuple):
  """One run of the sweep: a point, or with --vmap_seeds a point's seeds."""
  name: str
  args: list       # --config.* of the run
  workdir: pathlib.Path
  points: list


class Interrupted(Exception):
  """The sweep was asked to stop; its running points saved checkpoints."""

  def __init__(self, signum: int, stopped: int):
    super().__init__(
        f'Stopped by {signal.Signals(signum).name}: {stopped} running '
        'point(s) saved a checkpoint. Rerun the same command to resume them '
        'and run the rest.')
    self.exit_code = 128 + signum


def local_command(config: str, job: Job) -> list:
  return [sys.executable, '-m', 'research.main', f'--config={config}',
          f'--workdir={job.workdir}', *job.args]


def tpu_command(opts: Options, job: Job, index: int) -> list:
  gcs = opts.gcs_workdir
  if not gcs or not gcs.startswith('gs://'):
    raise SweepError('--launcher=tpu needs --gcs_workdir=gs://BUCKET/DIR.')
  vm = f'sweep-{index}-{os.getpid()}'
  return [sys.executable, '-m', 'launch.tpu', f'--name={vm}',
          *opts.tpu_flags.split(), f'--config={opts.config}',
          f'--workdir={gcs.rstrip("/")}/{job.name}',
          f'--results_to={job.workdir / "results.json"}', *job.args]


def run_points(commands: list, slots: list) -> dict:
  """Runs (job, argv) pairs, one per slot at a time; {job name: exit code}.

  SIGTERM or SIGINT stops starting points and passes SIGTERM to every
  running one (each saves a checkpoint and exits); once all have exited,
  raises Interrupted.
  """
  pending, running, codes, stop = list(commands), {}, {}, []

  def on_signal(signum, frame):
    del frame
    if not stop:
      print(f'{signal.Signals(signum).name}: stopping {len(running)} running '
            'point(s) at their next step, each with a checkpoint', flush=True)
    stop.append(signum)
    for _, proc, _, _ in running.values():
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)

  previous = {s: signal.signal(s, on_signal)
              for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    while (pending and not stop) or running:
      free = [i for i in range(len(slots)) if i not in running]
      while pending and free and not stop:
        job, argv = pending.pop(0)
        i = free.pop(0)
        job.workdir.mkdir(parents=True, exist_ok=True)
        log = open(job.workdir / 'sweep.log', 'a')
        print(f'start {job.name}  (log: {job.workdir / "sweep.log"})',
              flush=True)
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **slots[i]['env']},
            preexec_fn=_die_with_parent_and_pin(slots[i]['cpus']))
        running[i] = (job.name, proc, log, time.time())
      time.sleep(0.5)
      for i, (name, proc, log, start) in list(running.items()):
        if proc.poll() is not None:
          log.close()
          codes[name] = proc.returncode
          state = 'done' if proc.returncode == 0 else (
              f'FAILED (exit {proc.returncode})')
          print(f'{state} {name} in {time.time() - start:.0f} s', flush=True)
          del running[i]
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  if stop:
    raise Interrupted(stop[0], sum(1 for c in codes.values()
                                   if c in (128 + signal.SIGTERM,
                                            128 + signal.SIGINT)))
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
  opts = Options(
      config=_CONFIG.value, launcher=_LAUNCHER.value, parallel=_PARALLEL.value,
      parallel_given=flags.FLAGS['parallel'].present,
      vmap_seeds=_VMAP_SEEDS.value, gcs_workdir=_GCS_WORKDIR.value,
      tpu_flags=_TPU_FLAGS.value, slurm_flags=_SLURM_FLAGS.value,
      dry_run=_DRY_RUN.value, report_only=_REPORT_ONLY.value,
      metric=_METRIC.value, compare=tuple(_COMPARE.value),
      earlier=tuple(_EARLIER.value))
  workdir = pathlib.Path(_WORKDIR.value).resolve()
  try:
    module, arg = configlib.config_module(opts.config)
    sweep, grid = parse_grid(_SWEEP.value, module, arg)
    points = expand(grid)
    check_points(module, arg, extra, points)
    with workdir_lib.lock(workdir_lib.prepare(workdir), 'launch.sweep'):
      failed = run_sweep(opts, workdir, module, sweep, points, extra,
                         sys.argv[1:])
  except errors.UserError as e:
    sys.exit(f'Error: {e}')
  except Interrupted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
  if failed:
    sys.exit(failed)


def _without_seed(point: dict) -> dict:
  return {k: v for k, v in point.items() if k != 'seed'}


def point_dir(opts: Options, workdir: pathlib.Path,
              point: dict) -> pathlib.Path:
  """Where a point's run lives: WORKDIR/<point>, or with --vmap_seeds
  WORKDIR/<point less its seed>/seed=S (research/replicas.py's layout)."""
  if opts.vmap_seeds:
    return (workdir / (point_name(_without_seed(point)) or 'all')
            / f'seed={point["seed"]}')
  return workdir / point_name(point)


def jobs_of(opts: Options, workdir, points: list, extra: list,
            earlier: dict) -> tuple[list, list]:
  """(the jobs still to run, names of the points finished earlier, here or
  in `earlier`: sweep_report.earlier_rows)."""
  groups = {}
  for point in points:
    key = point_name(_without_seed(point)) if opts.vmap_seeds else (
        point_name(point))
    groups.setdefault(key, []).append(point)
  jobs, done = [], []
  for name, group in groups.items():
    if all((point_dir(opts, workdir, p) / 'results.json').exists()
           or point_name(p) in earlier for p in group):
      done.extend(point_name(p) for p in group)
      continue
    if opts.vmap_seeds:
      seeds = ','.join(str(p['seed']) for p in group)
      jobs.append(Job(name or 'all', [
          *extra, *point_args(_without_seed(group[0])),
          f'--config.seeds=({seeds},)'], workdir / (name or 'all'), group))
    else:
      jobs.append(Job(name, [*extra, *point_args(group[0])], workdir / name,
                      group))
  return jobs, done


def run_sweep(opts: Options, workdir, module, sweep, points, extra,
              argv: list) -> str:
  """Runs (or submits) the unfinished points and writes the report; returns
  what failed, '' if nothing did. `argv`: the sweep's own flags."""
  if opts.vmap_seeds and (opts.launcher != 'local' or 'seed' not in points[0]):
    raise SweepError('--vmap_seeds trains the seeds of each point together: '
                     'it needs a sweep over seed (seed=0,1,...) and the local '
                     'launcher.')
  earlier = sweep_report.earlier_rows(opts.earlier)
  for folder in opts.compare:  # before the points run, not after
    sweep_report.results_csv(folder)
  jobs, done = jobs_of(opts, workdir, points, extra, earlier)
  print(f'sweep {sweep!r}: {len(points)} points, {len(done)} finished '
        f'earlier{" (skipped)" if done else ""}, {len(jobs)} to run'
        + (' (seeds vmapped)' if opts.vmap_seeds else ''), flush=True)
  if opts.launcher == 'slurm' and not opts.report_only:
    if jobs:
      slurm_array.submit(opts, workdir, jobs, argv)
      return ''
  elif opts.dry_run:
    for index, job in enumerate(jobs):
      print(f'# {job.name}\n{" ".join(_argv(opts, job, index))}')
    return ''
  codes = {}
  if not opts.report_only:
    slots = (device_slots(opts.parallel) if opts.launcher == 'local'
             else [{'env': {}, 'cpus': None}] * opts.parallel)
    job_codes = run_points([(job, _argv(opts, job, i))
                            for i, job in enumerate(jobs)], slots)
    codes = {point_name(p): job_codes[job.name]
             for job in jobs if job.name in job_codes for p in job.points}
  command = shlex.join(['python', '-m', 'launch.sweep', *argv])
  report = sweep_report.write(workdir, sweep, points, point_name, module,
                              opts.metric, command, opts.compare, codes,
                              lambda p: point_dir(opts, workdir, p), earlier)
  print(report)
  failed = [job for job in jobs
            if any(codes.get(point_name(p)) for p in job.points)]
  if not failed:
    return ''
  return (f'{len(failed)} run(s) failed:\n' + '\n'.join(
      f'  {job.name}: {_last_error(job.workdir / "sweep.log")}'
      for job in failed)
          + '\nFix what they say, then rerun the same command: finished '
          'points are kept, the others start again or resume.')


def _argv(opts: Options, job: Job, index: int) -> list:
  if opts.launcher == 'tpu':
    return tpu_command(opts, job, index)
  return local_command(opts.config, job)


if __name__ == '__main__':
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
