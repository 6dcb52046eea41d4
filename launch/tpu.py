r"""Run a config on a Cloud TPU VM or pod slice: check, create, copy, install,
run, fetch results, delete.

  python -m launch.tpu --name=nielsen --zone=us-central2-b --accelerator_type=v4-32 \
      --config=configs/mnist_nielsen.py --workdir=gs://BUCKET/runs/nielsen \
      [--spot] [--keep] [--dry_run] [--config.a.b=value ...]

Every worker of the slice runs the same command; JAX finds the other workers by
itself (`jax.distributed.initialize()` on Cloud TPU). Keep the workdir on GCS:
checkpoints live there, so a run resumes wherever it stopped. With
`--retries=N`, a VM preempted (or gone) while it copies, installs or runs is
deleted and created again, up to N times, and the run resumes from its last
checkpoint; without it, rerunning the same launch command does the same. The
VM is deleted at the end, whatever happened, unless `--keep`. A gcloud step
that fails (quota, no capacity, a bad flag) ends the launch with one
paragraph: the step, gcloud's own message and what to do. `--dry_run` prints
the gcloud commands instead of running them.

Before the first gcloud call that costs money, everything that can be checked
here is: every flag is known (a mistyped one is refused, not dropped), the VM
name, zone and accelerator type are well formed (and, where gcloud is
installed, the type is offered in the zone), the config file loads with its
:ARG and --config.* overrides and passes the loop's checks. What ships is this
checkout's working tree as it is on disk (tracked and untracked files that git
does not ignore), so an uncommitted config travels with it. The requirements
need Python 3.11 or newer and the TPU images' own Python is 3.10: the workers
install one with uv, and the run uses it.
"""
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

from absl import app
from absl import flags
from ml_collections import config_flags

from research import cli
from research import configlib
from research import errors

_NAME = flags.DEFINE_string('name', None, 'TPU VM name.', required=True)
_ZONE = flags.DEFINE_string('zone', None, 'e.g. us-central2-b.', required=True)
_TYPE = flags.DEFINE_string('accelerator_type', 'v4-8', 'e.g. v4-32 (a pod '
                            'slice of 4 workers).')
_VERSION = flags.DEFINE_string('version', 'tpu-ubuntu2204-base',
                               'TPU VM software version.')
_SPOT = flags.DEFINE_bool('spot', False, 'Spot (preemptible) capacity.')
_KEEP = flags.DEFINE_bool('keep', False, 'Do not delete the TPU VM at the end.')
_RETRIES = flags.DEFINE_integer('retries', 0, 'Times to recreate a preempted '
                                'VM and resume the run.', lower_bound=0)
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the commands only.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'gs:// workdir of the run.',
                               required=True)
_RESULTS_TO = flags.DEFINE_string(
    'results_to', None, 'Local path for the run\'s results.json '
    '(default: NAME_results.json here).')
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with :ARG.',
    lock_config=True)

REPO = pathlib.Path(__file__).resolve().parents[1]
REMOTE = '~/research'
PYTHON = '3.11'  # the oldest the requirements accept (README, "Install")
# Cloud TPU names: lowercase letters, digits and hyphens, starting with a
# letter, at most 63 characters; zones like us-central2-b; types like v4-32,
# v5litepod-16, v6e-8.
NAME_RE = re.compile(r'[a-z]([-a-z0-9]{0,61}[a-z0-9])?')
ZONE_RE = re.compile(r'[a-z]+-[a-z]+[0-9]+-[a-z]')
TYPE_RE = re.compile(r'v[0-9]+[a-z]*-[0-9]+')


class LaunchError(errors.UserError, ValueError):
  """A launch that would fail or run the wrong thing; says what to change."""


# What a failed step leaves behind, and what to do about it.
AFTER_FAILURE = {
    'create': 'No VM was created. For quota or capacity ("Quota exceeded", '
              '"no more capacity", "stockout") try another --zone or '
              '--accelerator_type, --spot or not, or ask for quota.',
    'copy': 'The run has not started.',
    'install': 'The run has not started; the VM\'s log above says which '
               'package failed.',
    'run': 'The run\'s checkpoints stay in the workdir: rerun the same '
           'command to resume it (--retries=N does so after preemptions).',
    'fetch': 'The run finished; its results.json is in the workdir.',
    'delete': 'The VM may still exist and cost money: delete it with the '
              'command above.',
}
PREEMPTED_STATES = ('PREEMPTED', 'TERMINATED')


class GcloudError(errors.UserError, RuntimeError):
  """A gcloud step failed; the message names it and quotes gcloud."""

  def __init__(self, step: str, argv: list, message: str):
    self.step = step
    super().__init__(
        f'The {step!r} step failed ({shlex.join(argv[:6])} ...): '
        f'{message} {AFTER_FAILURE[step]}')


def run_step(step: str, argv: list):
  """Runs one gcloud step, its output streaming to this terminal; raises
  GcloudError with gcloud's last ERROR line if it fails."""
  print(f'== {step}', flush=True)
  proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
  tail = []
  for line in proc.stderr:
    sys.stderr.write(line)
    tail = (tail + [line.strip()])[-20:]
  if proc.wait():
    errors = [l for l in tail if l.startswith('ERROR:')]
    message = (errors or [l for l in tail if l] or
               [f'exit status {proc.returncode}'])[-1]
    raise GcloudError(step, argv, message[:600])


def vm_gone(describe: list) -> bool:
  """Whether the VM was preempted or no longer exists."""
  proc = subprocess.run(describe, capture_output=True, text=True, check=False)
  if proc.returncode:
    return 'NOT_FOUND' in proc.stderr or 'not found' in proc.stderr.lower()
  return proc.stdout.strip() in PREEMPTED_STATES


def launch(steps: dict, retries: int, keep: bool):
  """create, copy, install, run, fetch; a preempted VM is recreated up to
  `retries` times; the VM is deleted at the end unless `keep`."""
  attempt = 0
  while True:
    run_step('create', steps['create'])  # on failure there is nothing to delete
    try:
      for step in ('copy', 'install', 'run'):
        run_step(step, steps[step])
    except GcloudError as e:
      if attempt < retries and vm_gone(steps['describe']):
        attempt += 1
        print(f'== the VM was preempted during {e.step!r}: creating it again '
              f'(retry {attempt} of {retries}); the run resumes from its '
              'last checkpoint', flush=True)
        subprocess.run(steps['delete'], check=False)
        continue
      _delete_unless(keep, steps)
      raise
    except BaseException:
      _delete_unless(keep, steps)
      raise
    break
  try:
    run_step('fetch', steps['fetch'])
  finally:
    if not keep:
      run_step('delete', steps['delete'])


def _delete_unless(keep: bool, steps: dict):
  if not keep:
    subprocess.run(steps['delete'], check=False)


def check_request():
  """Refuses what would fail on the VM, before it costs anything."""
  if not NAME_RE.fullmatch(_NAME.value):
    raise LaunchError(f'--name={_NAME.value!r} is not a Cloud TPU name: '
                      'lowercase letters, digits and hyphens, starting with a '
                      'letter, at most 63 characters.')
  if not ZONE_RE.fullmatch(_ZONE.value):
    raise LaunchError(f'--zone={_ZONE.value!r} is not a zone name like '
                      'us-central2-b (gcloud compute tpus locations list).')
  if not TYPE_RE.fullmatch(_TYPE.value):
    raise LaunchError(f'--accelerator_type={_TYPE.value!r} is not a TPU type '
                      'like v4-8, v4-32, v5litepod-16 or v6e-8.')
  if not _WORKDIR.value.startswith('gs://'):
    raise LaunchError('--workdir must be a gs:// path: TPU workers share it, '
                      'and checkpoints must outlive a preempted VM.')
  config = cli.config_value(_CONFIG)
  configlib.validate(config)
  return config


def check_offered_in_zone(run=subprocess.run):
  """Where gcloud is installed (a free call): the zone exists and offers the
  accelerator type."""
  if not shutil.which('gcloud'):
    return
  listing = run(['gcloud', 'compute', 'tpus', 'accelerator-types', 'list',
                 f'--zone={_ZONE.value}', '--format=value(type)'],
                capture_output=True, text=True, check=False)
  if listing.returncode:
    raise LaunchError(f'gcloud cannot list TPU types in --zone={_ZONE.value} '
                      f'({listing.stderr.strip()[-300:]}): check the zone '
                      'and your gcloud project.')
  offered = listing.stdout.split()
  if _TYPE.value not in offered:
    raise LaunchError(f'--zone={_ZONE.value} offers no {_TYPE.value}; it '
                      f'has: {", ".join(offered) or "none"}.')


def shipped_files() -> list[str]:
  """This checkout as it is on disk: tracked and untracked files that git
  does not ignore."""
  out = subprocess.run(['git', '-C', str(REPO), 'ls-files', '-z', '--cached',
                        '--others', '--exclude-standard'], capture_output=True,
                       check=True).stdout
  return sorted(p for p in out.decode().split('\0')
                if p and (REPO / p).is_file())


def pack(archive: str) -> list[str]:
  files = shipped_files()
  with tarfile.open(archive, 'w:gz') as tar:
    for path in files:
      tar.add(REPO / path, arcname=path)
  return files


def commands(run_args: list, archive: str, results_to: str) -> dict:
  """The gcloud steps, each an argv list, in the order they run."""
  tpu = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  where = [_NAME.value, f'--zone={_ZONE.value}']
  on_all = [*tpu, 'ssh', *where, '--worker=all', '--command']
  run = ' '.join(['cd', REMOTE, '&&', '.venv/bin/python', '-m', 'research.main',
                  *map(shlex.quote, [*run_args,
                                     f'--workdir={_WORKDIR.value}'])])
  install = ' && '.join([
      f'mkdir -p {REMOTE}', f'tar -xzf ~/research.tar.gz -C {REMOTE}',
      f'cd {REMOTE}', 'python3 -m pip install --user -q uv',
      f'~/.local/bin/uv venv --python {PYTHON} .venv',
      '~/.local/bin/uv pip install --python .venv/bin/python -q '
      '-r requirements.txt "jax[tpu]"'])
  return {
      'create': [*tpu, 'create', *where, f'--accelerator-type={_TYPE.value}',
                 f'--version={_VERSION.value}', *(['--spot'] if _SPOT.value else [])],
      'copy': [*tpu, 'scp', archive, f'{_NAME.value}:~/research.tar.gz',
               f'--zone={_ZONE.value}', '--worker=all'],
      'install': [*on_all, install],
      'run': [*on_all, run],
      'fetch': ['gcloud', 'storage', 'cp', f'{_WORKDIR.value}/results.json',
                results_to],
      'describe': [*tpu, 'describe', *where, '--format=value(state)'],
      'delete': [*tpu, 'delete', *where, '--quiet'],
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    check_request()
    if not _DRY_RUN.value:
      check_offered_in_zone()
  except errors.UserError as e:
    sys.exit(f'Error: {e}')
  archive = str(pathlib.Path(tempfile.gettempdir()) / f'{_NAME.value}.tar.gz')
  results_to = _RESULTS_TO.value or f'{_NAME.value}_results.json'
  steps = commands(CONFIG_ARGS, archive, results_to)
  files = pack(archive)
  print(f'# pack\n{archive}: {len(files)} files of {REPO}')
  if _DRY_RUN.value:
    for name, argv_ in steps.items():
      print(f'# {name}\n{shlex.join(argv_)}')
    return
  try:
    launch(steps, _RETRIES.value, _KEEP.value)
  except errors.UserError as e:
    sys.exit(f'Error: {e}')


CONFIG_ARGS = []  # --config and --config.* as given, for the remote command


def parse(argv):
  """Every flag must be known (absl suggests the closest); --config and its
  overrides are kept as typed for the run on the workers."""
  CONFIG_ARGS[:] = [a for a in argv[1:] if a.startswith('--config')]
  return cli.parse_flags(argv)


if __name__ == '__main__':
  app.run(main, flags_parser=parse)
