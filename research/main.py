"""Command line: python -m research.main --config=configs/X.py --workdir=DIR
[--config.a.b=value ...]. Rerunning the same command resumes from DIR."""
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from research import checkpoints
from research import configlib
from research import logs
from research import mesh
from research import preemption
from research import train
from research.data import tfds_source

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

# Errors that mean "change your command", shown as one paragraph, not a trace.
USER_ERRORS = (configlib.ConfigError, tfds_source.DataError,
               mesh.ShardingError, train.TrainingError,
               checkpoints.CheckpointError)


def parse_flags(argv):
  """absl's parser, with a mistyped --config.key shown as a usage error."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections' unknown-key errors
    message = str(e).strip('\'"').replace('\\n', ' ').replace("\\'", "'")
    sys.exit(f'Unknown config key: {message}. Run with --config=FILE and only '
             'keys that FILE defines (see the config file).')
  except flags.Error as e:
    sys.exit(f'{e}\nSee: python -m research.main --helpfull')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(logs.QuietLibraries())
  mesh.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                              _PROCESS_ID.value)
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                             _ALLOW_CONFIG_CHANGE.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    sys.exit(128 + signal.SIGTERM)  # the shell's code for "ended by SIGTERM"
  except USER_ERRORS as e:
    logging.error('%s', e)
    sys.exit(f'Error: {e}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
