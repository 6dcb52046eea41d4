"""The keys every experiment config has, and the checks run before training.

Experiment configs in `configs/` start from `base()` and override what their
paper specifies; the training loop reads nothing that is not declared here or,
for `config.model`, by the config (its model's fields), so a mistyped
`--config.a.b=v` is refused by ml_collections instead of silently ignored.
"""
import ast
import difflib
import importlib.util
import math
import pathlib

import ml_collections
from flax import traverse_util
from ml_collections import config_dict

from research import errors


class ConfigError(errors.UserError, ValueError):
  """A config value the run cannot use; the message says what to change."""


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Train these seeds together, vmapped, each into WORKDIR/seed=S as if alone
  # (research/replicas.py); () trains config.seed into WORKDIR.
  c.seeds = ()

  c.model = ml_collections.ConfigDict()
  c.model.name = config_dict.placeholder(str)  # a key of research.models.REGISTRY
  # The model's other keys are declared by each config: its model's fields.

  # Devices as a (data, model) mesh: the batch splits over devices // model;
  # model = 2 puts each of AlexNet's towers on its own device, as on the
  # paper's two GPUs (section 3.2). Other params stay replicated.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.model = 1

  c.data = _data()

  # Weights to start from: a BVLC .caffemodel (research/caffe) or the workdir
  # of an earlier run (research/init_from.py); None: the model's own init.
  c.init_from = config_dict.placeholder(str)

  c.loss = 'softmax_cross_entropy'
  # Weight of the loss on logits a model sows as 'aux_logits' in training
  # (GoogLeNet section 5: 0.3 for each auxiliary classifier).
  c.aux_loss_weight = 0.3
  c.batch_size = 128          # global, split over all devices
  c.eval_batch_size = 1000    # global; eval sets are padded and masked to it
  c.num_epochs = 1.0          # 0: only evaluate (e.g. imported weights)

  c.optimizer = _optimizer()
  c.early_stopping = _early_stopping()
  _cadence(c)
  return c


def _data() -> ml_collections.ConfigDict:
  """Where the examples come from and what is done to them."""
  d = ml_collections.ConfigDict()
  d.name = config_dict.placeholder(str)   # a TFDS name, or an in-memory source
  d.data_dir = config_dict.placeholder(str)    # TFDS data_dir; None: TFDS default
  d.manual_dir = config_dict.placeholder(str)  # original download files, offline
  d.train_split = 'train'
  d.eval_splits = ml_collections.ConfigDict({'test': 'test'})
  # Undo TFDS's hash shuffle so 'train[:50000]' means the file's first 50,000.
  d.restore_file_order = False
  # Big sets (ImageNet) stream through tf.data with the papers' augmentation;
  # small ones are held in memory. See research/data/pipeline.py.
  d.streaming = False
  # ImageNet from its prepared store (research/data/prepared.py: squares of
  # 256 built once, read by index; augmentation as streamed, but cheap).
  d.prepared = False
  # Side of the square images the model sees; 0: as stored. Streamed: the crop
  # (224, AlexNet 227); in memory: stored images are resized to it on the device.
  d.image_size = 0
  d.channels = 0            # 3 repeats a grey channel (MNIST into RGB nets)
  # Model input = pixel_scale * stored/255 - pixel_mean (per channel). AlexNet
  # (section 2) sees raw 0..255 values minus the training set's mean: its
  # N(0, 0.01) weights keep no signal from inputs 255 times smaller.
  d.pixel_scale = 1.0
  d.pixel_mean = ()
  d.resize_to = 256         # streamed: shorter side, then central square
  # Training augmentation. Streamed: none | crop_flip | alexnet; in memory:
  # none | random_crop (random crops, centre crops in evaluation, of side
  # crop_size, resized on the device to image_size; crop_size 0: image_size).
  d.augment = 'none'
  d.crop_size = 0
  # Subtract each image's own mean (Goodfellow et al. 2013, section 5.1).
  d.subtract_image_mean = False
  d.eval_crops = 1          # streamed eval: 1 (centre) or 10 (AlexNet 4.1)
  d.shuffle_buffer = 10_000
  return d


def _optimizer() -> ml_collections.ConfigDict:
  """The update rule, its learning-rate schedule and the plateau rule."""
  o = ml_collections.ConfigDict()
  o.name = 'sgd'    # sgd | momentum | nesterov | adam | adamw | rmsprop
  o.learning_rate = 0.1
  o.momentum = 0.9  # momentum, nesterov, rmsprop
  o.b1 = 0.9        # adam, adamw
  o.b2 = 0.999
  o.eps = 1e-8
  # L2 on kernels, added to the gradient: w <- w - lr * (g + weight_decay * w),
  # as in Nielsen ch.3 (weight_decay = lambda / n) and AlexNet section 5.
  o.weight_decay = 0.0
  o.schedule = _schedule()
  o.plateau = _plateau()
  return o


def _schedule() -> ml_collections.ConfigDict:
  """The learning rate as a function of the step (research/optim.py)."""
  s = ml_collections.ConfigDict()
  s.name = 'constant'  # constant | cosine | exponential | piecewise
  s.warmup_epochs = 0.0
  s.decay_rate = 1.0         # exponential: factor per decay_every_epochs
  s.decay_every_epochs = 1.0
  s.boundaries_epochs = ()   # piecewise: lr *= scales[i] at each
  s.scales = ()
  return s


def _plateau() -> ml_collections.ConfigDict:
  """Multiply the learning rate by `factor` when `metric` has not improved for
  `patience` evals (Nielsen ch.3: halve it after 10 epochs without progress;
  AlexNet section 5: divide by 10). Training ends once the multiplier falls
  below `min_scale` (Nielsen: 1/128). factor = 1 turns this off. Here and in
  early stopping, a change of at most `min_delta` is not an improvement."""
  p = ml_collections.ConfigDict()
  p.factor = 1.0
  p.patience = 10
  p.metric = 'validation/accuracy'
  p.mode = 'max'
  p.min_scale = 0.0
  p.min_delta = 0.0
  return p


def _early_stopping() -> ml_collections.ConfigDict:
  """Ending training when a metric stops improving (research/stop_rules.py)."""
  e = ml_collections.ConfigDict()
  e.metric = 'validation/accuracy'
  e.mode = 'max'
  e.patience = 0  # evaluations without improvement; 0 = never stop
  e.min_delta = 0.0
  return e


def _cadence(c: ml_collections.ConfigDict):
  """How often the loop logs, evaluates and saves, and how many steps one
  compiled call runs."""
  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  # > 0: evaluate with BatchNorm statistics recomputed over this many training
  # images (research/precise_bn.py) instead of the running averages.
  c.precise_bn_examples = 0
  c.checkpoint_every_epochs = 1.0
  c.keep_checkpoints = 2
  c.steps_per_call = 1000   # most steps compiled into one lax.scan call
  # NAME: {type, split, every_epochs} (research/evaluators.py); empty: each
  # data.eval_splits entry every eval_every_epochs.
  c.evals = ml_collections.ConfigDict()
  # > 0: trace at least this many training steps (whole chunks, the first
  # that compile none) with jax.profiler into WORKDIR/profile (README:
  # "Profiling").
  c.profile = 0


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
  _need(math.isfinite(config.num_epochs) and config.num_epochs >= 0,
        f'config.num_epochs is {config.num_epochs!r}; it must be a positive '
        'number, or 0 to only evaluate (--config.num_epochs=X).')
  _need(isinstance(config.profile, int) and config.profile >= 0,
        f'config.profile is {config.profile!r}; it must be a number of steps '
        'to trace, or 0 for none (--config.profile=N).')
  for key in ('eval_every_epochs', 'checkpoint_every_epochs'):
    value = config[key]
    _need(math.isfinite(value) and value > 0,
          f'config.{key} is {value!r}; it must be a positive number '
          f'(--config.{key}=X).')
  model = config.mesh.model
  _need(isinstance(model, int) and model > 0,
        f'config.mesh.model is {model!r}; it must be a positive integer that '
        'divides the device count (--config.mesh.model=1).')
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
  for name, rule in (('optimizer.plateau', plateau),
                     ('early_stopping', config.early_stopping)):
    _need(rule.min_delta >= 0, f'config.{name}.min_delta is '
          f'{rule.min_delta!r}; it must be >= 0 (0: any gain is progress).')
  _need(config.precise_bn_examples >= 0,
        f'config.precise_bn_examples is {config.precise_bn_examples!r}; it '
        'must be >= 0 (0 keeps the running averages).')
  validate_data(config.data)


STREAMED_AUGMENTATIONS = ('none', 'crop_flip', 'alexnet')
IN_MEMORY_AUGMENTATIONS = ('none', 'random_crop')


def validate_data(data):
  """Checks config.data; streamed sources call it too."""
  _need(data.image_size >= 0 and data.channels in (0, 1, 3),
        f'config.data.image_size={data.image_size!r} must be >= 0 and '
        f'config.data.channels={data.channels!r} one of 0 (as stored), 1, 3.')
  _need(data.eval_crops in (1, 10),
        f'config.data.eval_crops is {data.eval_crops!r}; use 1 (centre crop) '
        'or 10 (corners, centre and their mirror images).')
  _need(data.crop_size == 0 or (data.crop_size > 0
                                and data.augment == 'random_crop'),
        f'config.data.crop_size={data.crop_size!r} needs in-memory '
        "config.data.augment='random_crop' (the side of the random crops, "
        'resized to config.data.image_size); 0 crops image_size.')
  if data.prepared:
    _need(not data.streaming and data.augment in STREAMED_AUGMENTATIONS
          and 0 < data.image_size <= 256,
          'config.data.prepared reads squares of 256 by index: set '
          '--config.data.streaming=False, an augment of '
          f'{", ".join(STREAMED_AUGMENTATIONS)}, and image_size <= 256.')
  elif not data.streaming:
    choose('in-memory augmentation (config.data.augment; streamed datasets '
           'have more)', data.augment, IN_MEMORY_AUGMENTATIONS)
    _need(data.eval_crops == 1,
          'config.data.eval_crops applies to streamed datasets only; set '
          '--config.data.streaming=True or leave it at 1.')
    _need(data.augment == 'none' or data.image_size > 0,
          "config.data.augment='random_crop' needs the crop size in "
          'config.data.image_size (e.g. 54).')
    _check_number_crop(data)
  else:
    choose('streamed augmentation (config.data.augment)', data.augment,
           STREAMED_AUGMENTATIONS)
    _need(data.image_size > 0 and data.resize_to >= data.image_size,
          f'Streaming needs config.data.image_size > 0 (the crop, e.g. 224) '
          f'and config.data.resize_to >= it; got {data.image_size} and '
          f'{data.resize_to}.')


# Datasets of whole numbers framed as Goodfellow et al. 2013 (section 5.1)
# frame them: the digits' box expanded 30%, resized to a square of this side
# (research/data/multidigit.py, svhn_full.py), so the number spans about
# side / 1.3 pixels of it and a smaller crop cuts digits off.
FRAMED_NUMBERS = {'mnist_multidigit': 64, 'svhn_full': 64}


def _check_number_crop(data):
  side = FRAMED_NUMBERS.get(str(data.name or '').split('/')[0])
  crop = data.crop_size or data.image_size
  if side is None or data.augment != 'random_crop' or crop >= side / 1.3:
    return
  raise ConfigError(
      f'A {crop}x{crop} crop of the {side}x{side} frames of {data.name} cuts '
      f'the number off: it spans about {side / 1.3:.0f} pixels of the frame '
      '(the digits\' box expanded 30%). Crop as the paper does and resize the '
      f'crop: --config.data.crop_size=54 --config.data.image_size={crop}.')


def choose(kind: str, name: str, choices) -> None:
  """Raises ConfigError for an unknown registry name, suggesting the closest."""
  if name in choices:
    return
  close = difflib.get_close_matches(str(name), list(choices), n=1)
  hint = f' Did you mean {close[0]!r}?' if close else ''
  raise ConfigError(f'Unknown {kind} {name!r}.{hint} Known: '
                    f'{", ".join(sorted(choices))}.')


def config_module(spec: str):
  """(module, arg) of 'configs/X.py[:ARG]': the config file run as a module,
  for its get_config(arg) and get_sweeps(arg)."""
  path, _, arg = str(spec).partition(':')
  if not pathlib.Path(path).is_file():
    raise ConfigError(f'No config file {path!r}; pass --config=configs/X.py.')
  module_spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem,
                                                       path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f'The config file {path}:{e.lineno} has a syntax error: '
                      f'{e.msg}. Fix that line of the file.') from None
  return module, arg or None


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
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ConfigError(f'The config argument {key}={value!r} must be '
                          f'{type(default).__name__}, like {default!r}.'
                          ) from None
  return out


def override(config: ml_collections.ConfigDict, key: str, value):
  """Sets `key` ('optimizer.learning_rate') as `--config.key=value` would,
  a string parsed as a Python literal where the field is not a string;
  ConfigError for an unknown key (with the closest) or a value of the wrong
  type. For checking a config without starting a run (launch/sweep.py)."""
  *path, leaf = key.split('.')
  node = config
  for depth, part in enumerate(path + [leaf]):
    if not isinstance(node, ml_collections.ConfigDict):
      raise ConfigError(f'config.{".".join(path[:depth])} has no fields; '
                        f'--config.{key} cannot be set.')
    if part not in node:
      close = difflib.get_close_matches(part, list(node), n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      raise ConfigError(f'Unknown config key {key!r}.{hint} The config '
                        'defines only the keys of research/configlib.py\'s '
                        'base() and its own.')
    if depth < len(path):
      node = node[part]
  old = node[leaf]
  if isinstance(value, str) and not isinstance(old, str) and old is not None:
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      raise ConfigError(f'--config.{key}={value!r} is not a '
                        f'{type(old).__name__} like {old!r}.') from None
  try:
    node[leaf] = value
  except TypeError as e:
    raise ConfigError(f'--config.{key}={value!r}: {e}') from None


# Where data lives is not part of the experiment: a run may resume elsewhere.
LOCATION_KEYS = ('data.data_dir', 'data.manual_dir')


def differences(saved: dict, new: dict) -> list[str]:
  """'key: saved -> new' for each experiment key that differs. A key the
  saved config lacks (added to the code since) counts only when set to
  something: None, 0, '' or an empty tuple (every such key's "off") is what
  the older run did."""
  a, b = (traverse_util.flatten_dict(d, sep='.') for d in (saved, new))
  added_off = lambda k: k not in a and b[k] in (None, 0, '', (), [], False)
  return [f'{k}: {a.get(k)!r} -> {b.get(k)!r}' for k in sorted(a.keys() | b.keys())
          if k not in LOCATION_KEYS and a.get(k) != b.get(k)
          and not (k in b and added_off(k))]
