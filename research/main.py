"""Command line: python -m research.main --config=configs/X.py --workdir=DIR
[--config.a.b=value ...]. Rerunning the same command resumes from DIR."""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once

import sys
import threading

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from research import cli
from research import errors
from research import logs
from research import mesh
from research import preemption
from research import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with :ARG.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the run writes and '
                               'resumes from.', required=True)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume a workdir although its saved '
    'config.json differs from --config (e.g. to train more epochs).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for a multi-process '
    'run started by hand (Slurm and Cloud TPU are detected without it).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'This process, 0..num_processes-1.')

def _quiet_disk_full(hook):
  """A threading.excepthook that leaves a full disk in Orbax's background
  save thread to the one paragraph the main thread prints about it."""
  def excepthook(args):
    if logs.disk_full(args.exc_value):
      logging.warning('A background save failed: the disk is full.')
      return
    hook(args)
  return excepthook


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(logs.QuietLibraries())
  threading.excepthook = _quiet_disk_full(threading.excepthook)
  mesh.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                              _PROCESS_ID.value)
  try:
    train.train_and_evaluate(cli.config_value(_CONFIG), _WORKDIR.value,
                             _ALLOW_CONFIG_CHANGE.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    sys.exit(e.exit_code)  # the shell's code for "ended by SIGTERM/SIGINT"
  except errors.UserError as e:  # one paragraph, not a traceback
    logging.error('%s', e)
    cli.exit_for_user_error(e)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
