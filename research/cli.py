"""Command-line parsing shared by research.main and the launchers: absl flags
and the experiment config file (`--config=configs/X.py[:ARG]`, read by
ml_collections), with every mistake in them shown as one paragraph.

  app.run(main, flags_parser=cli.parse_flags)
  config = cli.config_value(_CONFIG)   # the ConfigDict, or one paragraph
"""
import pathlib
import sys

from absl import flags
from ml_collections import config_flags

from research import configlib
from research import errors


def _config_file_error(e: SyntaxError) -> str:
  where = f'{e.filename}:{e.lineno}' if e.lineno else e.filename
  line = f' ({e.text.strip()})' if e.text else ''
  return (f'The config file {where} has a syntax error: {e.msg}{line}. Fix '
          'that line of the file.')


def parse_flags(argv, known_only: bool = False):
  """absl's parser, with config mistakes as one-paragraph usage errors:
  an unknown --config.key (with the closest key), a config file that does
  not exist or has a syntax error (file:line), a bad :ARG, a value of the
  wrong type."""
  try:
    return flags.FLAGS(argv, known_only=known_only)
  except (AttributeError, KeyError) as e:  # ml_collections' unknown-key errors
    message = str(e).strip('\'"').replace('\\n', ' ').replace("\\'", "'")
    sys.exit(f'Unknown config key: {message}. Run with --config=FILE and only '
             'keys that FILE defines (see the config file).')
  except (flags.Error, OSError, SyntaxError, configlib.ConfigError) as e:
    # ml_collections re-raises what loading the file raised, wrapped, and
    # sometimes as the same type with a longer message: the innermost one
    # says what went wrong.
    for cause in reversed(list(errors.causes(e))):
      if isinstance(cause, configlib.ConfigError):
        sys.exit(f'Error: {cause}')
      if isinstance(cause, SyntaxError):
        sys.exit(f'Error: {_config_file_error(cause)}')
      if isinstance(cause, FileNotFoundError):
        sys.exit(f'Error: {_missing_config(cause.filename)}')
    sys.exit(f'{e}\nSee: python -m {_module(argv)} --helpfull')


def exit_for_user_error(error: Exception):
  """Ends the command with the error's one paragraph and exit code 1."""
  sys.stdout.flush()
  sys.stderr.write(f'Error: {error}\n')
  sys.exit(1)


def _missing_config(path) -> str:
  known = sorted(p.name for p in pathlib.Path('configs').glob('*.py')
                 if 'def get_config' in p.read_text())
  hint = f' configs/ has: {", ".join(known)}.' if known else ''
  return (f'The config file {str(path)!r} does not exist. Pass '
          f'--config=configs/NAME.py[:ARG].{hint}')


def _module(argv) -> str:
  path = pathlib.Path(argv[0]) if argv else pathlib.Path('research/main.py')
  parts = path.with_suffix('').parts[-2:]
  return '.'.join(parts[:-1] if parts[-1] == '__main__' else parts)


def config_value(holder):
  """The ConfigDict of a DEFINE_config_file flag; a file that is missing or
  cannot be loaded exits with one paragraph naming it (ml_collections defers
  that error to the config's first use)."""
  path = config_flags.get_config_filename(flags.FLAGS[holder.name])
  path = str(path or '').partition(':')[0]
  if not pathlib.Path(path).is_file():
    sys.exit(f'Error: {_missing_config(path)}')
  config = holder.value
  try:
    config.keys()
  except OSError as e:
    sys.exit(f'Error: The config file {path!r} cannot be loaded: {e}')
  return config
