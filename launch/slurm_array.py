"""launch.sweep --launcher=slurm: the unfinished points as one Slurm job
array, a task per point, and a job that writes the report after it.

Each task runs its point through launch/slurm.sbatch, so a point preempted
or stopped near its time limit saves a checkpoint and requeues its own task,
and logs to WORKDIR/<point>/slurm-<task's job id>.log. The array's script and
the submitted job ids are kept in WORKDIR/slurm/; while those jobs are still
queued or running the sweep refuses to submit the same points again.
"""
import pathlib
import shlex
import subprocess
import sys

from research import errors

REPO = pathlib.Path(__file__).resolve().parents[1]
# sbatch flags that the report job shares with the points' tasks: where it may
# run and who pays, not what the points need (GPUs, time).
_PLACEMENT = ('--partition', '-p', '--account', '-A', '--qos', '-q')


class SlurmError(errors.UserError, ValueError):
  """Slurm refused or is absent; the message says what to change."""


def array_script(config: str, jobs: list) -> str:
  """A batch script whose task i runs jobs[i] through launch/slurm.sbatch."""
  cases = '\n'.join(
      f'  {i}) set -- {shlex.join([config, str(job.workdir), *job.args])} ;;'
      for i, job in enumerate(jobs))
  return f'''#!/bin/bash
# Written by launch.sweep: task i of this job array runs point i below
# through launch/slurm.sbatch (checkpoint and requeue on SIGTERM).
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=/dev/null
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "no point for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac
export RESEARCH_REPO={shlex.quote(str(REPO))}
export RESEARCH_PYTHON=${{RESEARCH_PYTHON:-{shlex.quote(sys.executable)}}}
exec bash "$RESEARCH_REPO/launch/slurm.sbatch" "$@"
'''


def _run(argv: list, what: str) -> str:
  try:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
  except FileNotFoundError:
    raise SlurmError(f'{argv[0]} is not installed here: --launcher=slurm '
                     'runs on a Slurm login node.') from None
  if proc.returncode:
    raise SlurmError(f'{what} failed: {proc.stderr.strip()[-500:]}. Fix the '
                     'flags it names (--slurm_flags) and rerun.')
  return proc.stdout.strip()


def still_queued(folder: pathlib.Path) -> list[str]:
  """The ids of this sweep's earlier jobs that Slurm still holds."""
  ids_file = folder / 'job_ids'
  if not ids_file.exists():
    return []
  ids = ids_file.read_text().split()
  listing = _run(['squeue', '-h', '-o', '%A', '-j', ','.join(ids)],
                 'squeue') if ids else ''
  queued = set(listing.split())
  return [i for i in ids if i in queued]


def submit(opts, workdir: pathlib.Path, jobs: list, sweep_argv: list):
  """Submits the array and its report job, or prints them (--dry_run)."""
  folder = workdir / 'slurm'
  script = folder / 'array.sh'
  indices = f'0-{len(jobs) - 1}' + (f'%{opts.parallel}'
                                    if opts.parallel_given else '')
  flags = shlex.split(opts.slurm_flags)
  array = ['sbatch', '--parsable', f'--array={indices}',
           f'--job-name=sweep-{workdir.name}', *flags, str(script)]
  report_command = shlex.join([
      sys.executable, '-m', 'launch.sweep',
      *[a for a in sweep_argv if a != '--dry_run'], '--report_only'])
  placement = [f for f in flags if f.split('=')[0] in _PLACEMENT]

  def report(after: str) -> list:
    return ['sbatch', '--parsable', f'--dependency=afterany:{after}',
            f'--job-name=sweep-{workdir.name}-report',
            f'--output={folder}/report-%j.log', *placement, '--wrap',
            f'cd {shlex.quote(str(pathlib.Path.cwd()))} && '
            f'PYTHONPATH={shlex.quote(str(REPO))} {report_command}']
  text = array_script(opts.config, jobs)
  if opts.dry_run:
    print(f'# {script}\n{text}# submit\n{shlex.join(array)}\n'
          f'{shlex.join(report("ARRAY_JOB_ID"))}')
    return
  queued = still_queued(folder)
  if queued:
    raise SlurmError(
        f'This sweep\'s jobs {", ".join(queued)} are still queued or running '
        f'(squeue -j {",".join(queued)}): submitting its points again would '
        'run them twice. Wait for them, or scancel them, then rerun.')
  folder.mkdir(parents=True, exist_ok=True)
  script.write_text(text)
  array_id = _run(array, 'sbatch of the job array').split(';')[0]
  report_id = _run(report(array_id), 'sbatch of the report job').split(';')[0]
  (folder / 'job_ids').write_text(f'{array_id} {report_id}\n')
  print(f'Submitted job array {array_id} ({len(jobs)} points: '
        f'{", ".join(job.name for job in jobs)}) and job {report_id}, which '
        f'writes {workdir}/results.md once they end. Follow them with '
        f'squeue -j {array_id},{report_id}; rerun this command to resubmit '
        'points that did not finish.', flush=True)
