"""The keys every experiment config has, and the checks run before training.

Experiment configs in `configs/` start from `base()` and override what their
paper specifies; the training loop reads nothing that is not declared here, so a
mistyped `--config.a.b=v` is refused by ml_collections instead of silently ignored.
"""
import difflib
import math

import ml_collections
from flax import traverse_util
from ml_collections import config_dict


class ConfigError(ValueError):
  """A config value the run cannot use; the message says what to change."""


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = config_dict.placeholder(str)  # a key of research.models.REGISTRY

  c.data = ml_collections.ConfigDict()
  c.data.name = config_dict.placeholder(str)   # a TFDS name, or an in-memory source
  c.data.data_dir = config_dict.placeholder(str)    # TFDS data_dir; None: TFDS default
  c.data.manual_dir = config_dict.placeholder(str)  # original download files, offline
  c.data.train_split = 'train'
  c.data.eval_splits = ml_collections.ConfigDict({'test': 'test'})
  # Undo TFDS's hash shuffle so 'train[:50000]' means the file's first 50,000.
  c.data.restore_file_order = False

  c.loss = 'softmax_cross_entropy'
  # Weight of the loss on logits a model sows as 'aux_logits' in training
  # (GoogLeNet section 5: 0.3 for each auxiliary classifier).
  c.aux_loss_weight = 0.3
  c.batch_size = 128          # global, split over all devices
  c.eval_batch_size = 1000    # global; eval sets are padded and masked to it
  c.num_epochs = 1.0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'    # sgd | momentum | nesterov | adam | adamw | rmsprop
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9  # momentum, nesterov, rmsprop
  c.optimizer.b1 = 0.9        # adam, adamw
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  # L2 on kernels, added to the gradient: w <- w - lr * (g + weight_decay * w),
  # as in Nielsen ch.3 (weight_decay = lambda / n) and AlexNet section 5.
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = ml_collections.ConfigDict()
  c.optimizer.schedule.name = 'constant'  # constant | cosine | exponential | piecewise
  c.optimizer.schedule.warmup_epochs = 0.0
  c.optimizer.schedule.decay_rate = 1.0         # exponential: factor per decay_every_epochs
  c.optimizer.schedule.decay_every_epochs = 1.0
  c.optimizer.schedule.boundaries_epochs = ()   # piecewise: lr *= scales[i] at each
  c.optimizer.schedule.scales = ()

  # Multiply the learning rate by `factor` when `metric` has not improved for
  # `patience` evals (Nielsen ch.3: halve it after 10 epochs without progress;
  # AlexNet section 5: divide by 10). Training ends once the multiplier falls
  # below `min_scale` (Nielsen: 1/128). factor = 1 turns this off.
  c.optimizer.plateau = ml_collections.ConfigDict()
  c.optimizer.plateau.factor = 1.0
  c.optimizer.plateau.patience = 10
  c.optimizer.plateau.metric = 'validation/accuracy'
  c.optimizer.plateau.mode = 'max'
  c.optimizer.plateau.min_scale = 0.0

  c.early_stopping = ml_collections.ConfigDict()
  c.early_stopping.metric = 'validation/accuracy'
  c.early_stopping.mode = 'max'
  c.early_stopping.patience = 0  # evaluations without improvement; 0 = never stop

  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  c.checkpoint_every_epochs = 1.0
  c.keep_checkpoints = 2
  c.steps_per_call = 1000   # most steps compiled into one lax.scan call
  return c


def _need(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def validate(config: ml_collections.ConfigDict):
  """Refuses values no run can use, naming the flag to change."""
  _need(config.model.name is not None,
        'config.model.name is not set: pass --config.model.name=NAME.')
  _need(config.data.name is not None,
        'config.data.name is not set: pass --config.data.name=NAME.')
  for key in ('batch_size', 'eval_batch_size', 'log_every_steps',
              'steps_per_call', 'keep_checkpoints'):
    value = config[key]
    _need(isinstance(value, int) and value > 0,
          f'config.{key} is {value!r}; it must be a positive integer '
          f'(--config.{key}=N).')
  for key in ('num_epochs', 'eval_every_epochs', 'checkpoint_every_epochs'):
    value = config[key]
    _need(math.isfinite(value) and value > 0,
          f'config.{key} is {value!r}; it must be a positive number '
          f'(--config.{key}=X).')
  lr = config.optimizer.learning_rate
  _need(math.isfinite(lr) and lr > 0,
        f'config.optimizer.learning_rate is {lr!r}; it must be positive '
        '(--config.optimizer.learning_rate=0.1).')
  _need(config.optimizer.weight_decay >= 0,
        f'config.optimizer.weight_decay is {config.optimizer.weight_decay!r}; '
        'it must be >= 0.')
  plateau = config.optimizer.plateau
  _need(0 < plateau.factor <= 1,
        f'config.optimizer.plateau.factor is {plateau.factor!r}; it must be in '
        '(0, 1] (1 turns the plateau schedule off).')
  _need(plateau.patience >= 1 and plateau.mode in ('min', 'max'),
        'config.optimizer.plateau needs patience >= 1 and mode min or max.')
  _need(config.early_stopping.patience >= 0,
        'config.early_stopping.patience must be >= 0 (0 turns it off).')
  _need(config.early_stopping.mode in ('min', 'max'),
        f'config.early_stopping.mode is {config.early_stopping.mode!r}; '
        "use 'min' or 'max'.")


def choose(kind: str, name: str, choices) -> None:
  """Raises ConfigError for an unknown registry name, suggesting the closest."""
  if name in choices:
    return
  close = difflib.get_close_matches(str(name), list(choices), n=1)
  hint = f' Did you mean {close[0]!r}?' if close else ''
  raise ConfigError(f'Unknown {kind} {name!r}.{hint} Known: '
                    f'{", ".join(sorted(choices))}.')


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses the ':ARG' of --config=FILE:ARG, e.g. 'test' or 'hidden=15,test'.

  Keys must be among `defaults`, whose types the values take; a bare key sets a
  bool to True.
  """
  out = ml_collections.ConfigDict(defaults)
  for token in filter(None, (arg or '').split(',')):
    key, _, value = token.partition('=')
    choose('config argument', key, defaults)
    default = defaults[key]
    if isinstance(default, bool):
      out[key] = value.lower() in ('', '1', 'true', 'yes')
    else:
      out[key] = type(default)(value)
  return out


# Where data lives is not part of the experiment: a run may resume elsewhere.
LOCATION_KEYS = ('data.data_dir', 'data.manual_dir')


def differences(saved: dict, new: dict) -> list[str]:
  """'key: saved -> new' for each experiment key that differs."""
  a, b = (traverse_util.flatten_dict(d, sep='.') for d in (saved, new))
  return [f'{k}: {a.get(k)!r} -> {b.get(k)!r}' for k in sorted(a.keys() | b.keys())
          if k not in LOCATION_KEYS and a.get(k) != b.get(k)]
