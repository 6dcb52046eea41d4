r"""Run a config on a Cloud TPU VM or pod slice: create, copy, install, run,
fetch results, delete.

  python -m launch.tpu --name=nielsen --zone=us-central2-b --accelerator_type=v4-32 \
      --config=configs/mnist_nielsen.py --workdir=gs://BUCKET/runs/nielsen \
      [--spot] [--keep] [--dry_run] [--config.a.b=value ...]

Every worker of the slice runs the same command; JAX finds the other workers by
itself (`jax.distributed.initialize()` on Cloud TPU). Keep the workdir on GCS:
checkpoints live there, so after a spot preemption the same launch command
resumes the run. `--dry_run` prints the gcloud commands instead of running them.
"""
import pathlib
import shlex
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

_NAME = flags.DEFINE_string('name', None, 'TPU VM name.', required=True)
_ZONE = flags.DEFINE_string('zone', None, 'e.g. us-central2-b.', required=True)
_TYPE = flags.DEFINE_string('accelerator_type', 'v4-8', 'e.g. v4-32 (a pod '
                            'slice of 4 workers).')
_VERSION = flags.DEFINE_string('version', 'tpu-ubuntu2204-base',
                               'TPU VM software version.')
_SPOT = flags.DEFINE_bool('spot', False, 'Spot (preemptible) capacity.')
_KEEP = flags.DEFINE_bool('keep', False, 'Do not delete the TPU VM at the end.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the commands only.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'gs:// workdir of the run.',
                               required=True)
_RESULTS_TO = flags.DEFINE_string(
    'results_to', None, 'Local path for the run\'s results.json '
    '(default: NAME_results.json here).')

REPO = pathlib.Path(__file__).resolve().parents[1]
REMOTE = '~/research'


def commands(run_args: list, archive: str, results_to: str) -> dict:
  """The gcloud steps, each an argv list, in the order they run."""
  tpu = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  where = [_NAME.value, f'--zone={_ZONE.value}']
  on_all = [*tpu, 'ssh', *where, '--worker=all', '--command']
  run = ' '.join(['cd', REMOTE, '&&', '.venv/bin/python', '-m', 'research.main',
                  *map(shlex.quote, run_args), f'--workdir={_WORKDIR.value}'])
  return {
      'create': [*tpu, 'create', *where, f'--accelerator-type={_TYPE.value}',
                 f'--version={_VERSION.value}', *(['--spot'] if _SPOT.value else [])],
      'copy': [*tpu, 'scp', archive, f'{_NAME.value}:~/research.tar.gz',
               f'--zone={_ZONE.value}', '--worker=all'],
      'install': [*on_all, f'mkdir -p {REMOTE} && tar -xzf ~/research.tar.gz '
                  f'-C {REMOTE} && cd {REMOTE} && python3 -m venv .venv && '
                  '.venv/bin/pip install -q -r requirements.txt "jax[tpu]"'],
      'run': [*on_all, run],
      'fetch': ['gcloud', 'storage', 'cp', f'{_WORKDIR.value}/results.json',
                results_to],
      'delete': [*tpu, 'delete', *where, '--quiet'],
  }


def main(argv):
  if not _WORKDIR.value.startswith('gs://'):
    sys.exit('--workdir must be a gs:// path: TPU workers share it, and '
             'checkpoints must outlive a preempted VM.')
  run_args = [a for a in argv[1:] if a.startswith('--config')]
  if not any(a.startswith('--config=') for a in run_args):
    sys.exit('Pass --config=configs/X.py (and any --config.a.b=value).')
  archive = str(pathlib.Path(tempfile.gettempdir()) / f'{_NAME.value}.tar.gz')
  results_to = _RESULTS_TO.value or f'{_NAME.value}_results.json'
  steps = commands(run_args, archive, results_to)
  pack = ['git', '-C', str(REPO), 'archive', '--format=tar.gz', '-o', archive,
          'HEAD']
  if _DRY_RUN.value:
    for name, argv_ in [('pack', pack), *steps.items()]:
      print(f'# {name}\n{shlex.join(argv_)}')
    return
  subprocess.run(pack, check=True)
  subprocess.run(steps['create'], check=True)
  try:
    for name in ('copy', 'install', 'run', 'fetch'):
      print(f'== {name}', flush=True)
      subprocess.run(steps[name], check=True)  # logs stream to this terminal
  finally:
    if not _KEEP.value:
      subprocess.run(steps['delete'], check=False)


if __name__ == '__main__':
  app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
