"""The one training loop every model uses: `train_and_evaluate(config, workdir)`.

Sections: mesh, input, model and optimizer, compiled step, checkpoint and resume,
loop (train chunks, evals, checkpoints, early stopping), results.

K consecutive steps run as one compiled `lax.scan` over a (K, batch, ...) chunk,
so an MNIST epoch of 5,000 mini-batches is a handful of calls, not a Python loop
per mini-batch. Chunks end where a log, eval or checkpoint is due, so the chunk
boundaries, and with them every number, depend only on the step: a resumed run
repeats an uninterrupted one exactly.
"""
import functools
import json
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax.training import train_state

from research import checkpoints
from research import configlib
from research import logs
from research import losses
from research import mesh as mesh_lib
from research import metrics
from research import models
from research import optim
from research import preemption
from research import watch
from research.data import pipeline


class TrainingError(RuntimeError):
  """Training cannot go on (e.g. the loss is no longer finite)."""


def to_float(images):
  """uint8 pixels -> [0, 1]; float inputs pass unchanged."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def make_prepare(image_size: int = 0, channels: int = 0, scale: float = 1.0,
                 mean=(), subtract_image_mean: bool = False):
  """Stored pixels -> model input, on the device: [0, 1] floats times `scale`
  minus the per-channel `mean` (or, with `subtract_image_mean`, each image's
  own mean), resized (bilinear) to image_size x image_size and a grey channel
  repeated to `channels`; so MNIST's 28x28 digits can feed AlexNet's RGB input
  without a copy of the dataset at that size in host memory. 0 leaves a
  dimension as is."""
  def prepare(images):
    x = to_float(images)
    if image_size and x.shape[-3:-1] != (image_size, image_size):
      x = jax.image.resize(
          x, x.shape[:-3] + (image_size, image_size, x.shape[-1]), 'bilinear')
    if channels and x.shape[-1] != channels:
      x = jnp.repeat(x, channels // x.shape[-1], axis=-1)
    x = x * scale - jnp.asarray(mean or 0.0, jnp.float32)
    if subtract_image_mean:
      x -= jnp.mean(x, axis=(-3, -2, -1), keepdims=True)
    return x
  return prepare


def crop_averaged_logits(model, params, images):
  """Logits of a batch of inputs; for (B, crops, H, W, C) images the log of the
  softmax averaged over the crops (AlexNet section 4.1's 10-patch test), which
  ranks classes as that average and gives its cross-entropy."""
  if images.ndim != 5:
    return model.apply({'params': params}, images, train=False)
  b, crops = images.shape[:2]
  logits = model.apply({'params': params}, images.reshape((b * crops,)
                                                          + images.shape[2:]),
                       train=False)
  probs = jax.nn.softmax(logits.reshape((b, crops, -1)), axis=-1)
  return jnp.log(jnp.mean(probs, axis=1))


class TrainState(train_state.TrainState):
  """flax's TrainState whose updates keep its arrays' shardings.

  Without the constraint XLA picks the updated state's shardings itself: with
  a 'model' axis it split replicated params (conv3, fc6) over it, and the
  step, compiled for the old placement, refused the new one. `shardings`
  holds one sharding per leaf, in leaf order (a tuple: static fields must
  hash); None leaves the choice to XLA.
  """
  shardings: tuple | None = flax.struct.field(pytree_node=False, default=None)

  def apply_gradients(self, *, grads, **kwargs):
    new = super().apply_gradients(grads=grads, **kwargs)
    if self.shardings is None:
      return new
    return jax.lax.with_sharding_constraint(
        new, jax.tree.unflatten(jax.tree.structure(new), self.shardings))


def create_train_state(model, tx, rng, sample_images, mesh) -> TrainState:
  """Initialises params and optimizer state in one compiled call, placed over
  `mesh` as the model's partitioning metadata says (AlexNet's tower params
  split over 'model', one tower per device); everything else replicated.

  The state holds plain arrays (the metadata boxes are stripped), so the step,
  checkpoints and the optimizer's masks see the same tree as on one device.
  """
  def init(rng, sample_images, shardings=None):
    """(params with their partitioning metadata, the state)."""
    boxed = model.init(rng, to_float(sample_images), train=False)['params']
    return boxed, TrainState.create(apply_fn=model.apply,
                                    params=nn.unbox(boxed), tx=tx,
                                    shardings=shardings)

  # Shapes and metadata only: nothing is computed.
  boxed, abstract = jax.eval_shape(init, rng, sample_images)
  param_shardings = mesh_lib.param_shardings(boxed, mesh)
  shardings = abstract.replace(
      step=mesh_lib.replicated(mesh), params=param_shardings,
      opt_state=mesh_lib.like_params(abstract.opt_state, abstract.params,
                                     param_shardings, mesh))
  flat = tuple(jax.tree.leaves(shardings))
  return jax.jit(lambda rng, images: init(rng, images, flat)[1],
                 out_shardings=shardings.replace(shardings=flat))(
                     rng, sample_images)


def make_train_chunk(model, loss_fn, aux_loss_weight: float = 0.0,
                     prepare=to_float):
  """(state, batches (K, B, ...), key) -> (state, per-step losses (K,)).

  Logits a model sows in 'aux_logits' during training (GoogLeNet's auxiliary
  classifiers) add their loss times `aux_loss_weight`. `prepare` turns stored
  pixels into model input (see make_prepare).
  """

  def step(state, batch):
    rng = jax.random.fold_in(batch['key'], state.step)

    def mean_loss(params):
      logits, extra = model.apply(
          {'params': params}, prepare(batch['image']), train=True,
          rngs={'dropout': rng}, mutable=['aux_logits'])
      loss = jnp.mean(loss_fn(logits, batch['label']))
      for (aux,) in extra.get('aux_logits', {}).values():
        loss += aux_loss_weight * jnp.mean(loss_fn(aux, batch['label']))
      return loss

    loss, grads = jax.value_and_grad(mean_loss)(state.params)
    return state.apply_gradients(grads=grads), loss

  @functools.partial(jax.jit, donate_argnums=0)
  def train_chunk(state, batches, key):
    if batches['label'].shape[0] == 1:
      # No loop: XLA's CPU convolutions inside a while loop ran 12x slower
      # (AlexNet: 42 s against 3.4 s a step), and with research/xla_flags.py
      # still 7x (ch.6 convnet: 557 against 4,095 images/s), so conv nets use
      # steps_per_call=1.
      state, loss = step(state, {**jax.tree.map(lambda x: x[0], batches),
                                 'key': key})
      return state, loss[None]
    return jax.lax.scan(
        lambda s, b: step(s, {**b, 'key': key}), state, batches)

  return train_chunk


def make_eval_chunk(model, loss_fn, prepare=to_float):
  """(params, batches (N, B, ...) with 'mask') -> summed counts. Images
  (N, B, crops, ...) are scored by their crop-averaged softmax."""

  @jax.jit
  def eval_chunk(params, batches):
    def counts(batch):
      logits = crop_averaged_logits(model, params, prepare(batch['image']))
      return metrics.counts(logits, batch['label'], batch['mask'],
                            loss_fn(logits, batch['label']))
    return jax.tree.map(lambda x: x.sum(0), jax.lax.map(counts, batches))

  return eval_chunk


def _boundaries(config, steps_per_epoch: int):
  every = lambda epochs: max(1, round(epochs * steps_per_epoch))
  return {'log': config.log_every_steps,
          'eval': every(config.eval_every_epochs),
          'checkpoint': every(config.checkpoint_every_epochs),
          'call': config.steps_per_call}


def _next_stop(step: int, intervals: dict, total_steps: int) -> int:
  return min([total_steps] + [(step // n + 1) * n for n in intervals.values()])


def _due(step: int, interval: int, total_steps: int) -> bool:
  return step % interval == 0 or step == total_steps


def _check_same_experiment(config, workdir, allow_config_change: bool):
  """Refuses to resume a workdir that holds a run of another config."""
  path = workdir / 'config.json'
  if not path.exists():
    return
  changed = configlib.differences(json.loads(path.read_text()),
                                  json.loads(config.to_json_best_effort()))
  if changed and not allow_config_change:
    raise configlib.ConfigError(
        f'{workdir} holds a run of a different config ({"; ".join(changed)}). '
        'Use a new --workdir, or pass --allow_config_change to continue that '
        'run with the new values.')
  if changed:
    logging.warning('Continuing %s with changed config: %s', workdir,
                    '; '.join(changed))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_config_change: bool = False) -> dict:
  """Trains `config` in `workdir`, resuming from its last checkpoint if any.

  Returns the final metrics, also written to `workdir/results.json`.
  """
  configlib.validate(config)
  # Also JAX's context mesh while training: AlexNet's towers find the 'model'
  # axis there.
  with mesh_lib.context(mesh_lib.make_mesh(config.mesh.model)) as mesh:
    return _train_and_evaluate(config, workdir, allow_config_change, mesh)


def _train_and_evaluate(config, workdir, allow_config_change, mesh) -> dict:
  workdir = checkpoints.absolute(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  _check_same_experiment(config, workdir, allow_config_change)
  is_writer = jax.process_index() == 0

  # ---- Mesh -------------------------------------------------------------------
  mesh_lib.check_divisible('batch_size', config.batch_size, mesh)
  mesh_lib.check_divisible('eval_batch_size', config.eval_batch_size, mesh)
  batch_sharding = mesh_lib.stacked_batches(mesh)

  # ---- Input ------------------------------------------------------------------
  train_data, eval_sources = pipeline.create(
      config.data, config.batch_size, config.eval_batch_size, config.seed,
      jax.process_index(), jax.process_count())
  # An in-memory split stays on the devices between evaluations.
  eval_sources = {name: [mesh_lib.to_global(c, batch_sharding) for c in source]
                  if isinstance(source, list) else source
                  for name, source in eval_sources.items()}
  prepare = make_prepare(config.data.image_size, config.data.channels,
                         config.data.pixel_scale, config.data.pixel_mean,
                         config.data.subtract_image_mean)
  steps_per_epoch = train_data.steps_per_epoch
  total_steps = max(1, round(config.num_epochs * steps_per_epoch))
  intervals = _boundaries(config, steps_per_epoch)

  # ---- Model and optimizer ----------------------------------------------------
  model = models.build(config.model)
  loss_fn = losses.get(config.loss)
  tx, learning_rate = optim.create(config.optimizer, steps_per_epoch,
                                   total_steps)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  sample = np.asarray(prepare(train_data.sample_images()))
  state = create_train_state(model, tx, init_key, sample, mesh)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('%s: %s parameters, %d devices, %d steps of %d (%d per epoch)',
               config.model.name, f'{num_params:,}', mesh.devices.size,
               total_steps, config.batch_size, steps_per_epoch)

  # ---- Compiled step ----------------------------------------------------------
  train_chunk = make_train_chunk(model, loss_fn, config.aux_loss_weight,
                                 prepare)
  eval_chunk = make_eval_chunk(model, loss_fn, prepare)
  compiled = {}  # chunk length -> executable, compiled ahead so it is timed apart

  def executable(state, batches):
    length = batches['label'].shape[0]
    if length not in compiled:
      start = time.perf_counter()
      compiled[length] = train_chunk.lower(state, batches, dropout_key).compile()
      loop['compile_seconds'] += time.perf_counter() - start
    return compiled[length]

  def evaluate(params) -> dict:
    out = {}
    for name, source in eval_sources.items():
      sums = None
      for chunk in source:
        if not isinstance(source, list):
          chunk = mesh_lib.to_global(chunk, batch_sharding)
        counts = eval_chunk(params, chunk)
        sums = counts if sums is None else jax.tree.map(jnp.add, sums, counts)
      out.update(metrics.finalize(name, jax.device_get(sums)))
    return out

  # ---- Checkpoint and resume --------------------------------------------------
  ckpt = checkpoints.Checkpointer(workdir / 'checkpoints',
                                  config.keep_checkpoints)
  # Saved with each checkpoint, so a resumed run continues the same bookkeeping.
  loop = {'best': None, 'early_stopping': {}, 'plateau': {},
          'stopped_early': False, 'train_seconds': 0.0, 'compile_seconds': 0.0}
  plateau = optim.Plateau(config.optimizer)
  early_stopping = watch.MetricWatch(**config.early_stopping)
  resumed = ckpt.latest_step()
  if resumed is not None:
    state, loop = ckpt.restore(resumed, state)
    logging.info('Resumed from the checkpoint at step %d.', resumed)
  log = logs.MetricsLog(workdir, resumed)
  if is_writer:  # only now: a run refused above must not claim the workdir
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))

  # ---- Loop -------------------------------------------------------------------
  step = int(state.step)
  # Seconds this run the loop spent fetching and placing input. The next chunk
  # is fetched while the devices run the current one, so its share of the
  # training time bounds how long they can have waited for data.
  data_seconds = 0.0

  def load(first, last):
    nonlocal data_seconds
    start = time.perf_counter()
    out = mesh_lib.to_global(train_data.chunk(first, last - first),
                             batch_sharding)
    data_seconds += time.perf_counter() - start
    return out

  eval_metrics, seconds_this_run, batches = {}, 0.0, None
  notice = preemption.Notice()
  try:
    while step < total_steps and not loop['stopped_early']:
      start, compile_before = time.perf_counter(), loop['compile_seconds']
      stop = _next_stop(step, intervals, total_steps)
      if batches is None:
        batches = load(step, stop)
      state, step_losses = executable(state, batches)(state, batches,
                                                      dropout_key)
      # Stage the next chunk on the device while it runs this one.
      following = _next_stop(stop, intervals, total_steps)
      batches = load(stop, following) if stop < total_steps else None
      step_losses = np.asarray(jax.device_get(step_losses))
      elapsed = (time.perf_counter() - start
                 - (loop['compile_seconds'] - compile_before))
      seconds_this_run += elapsed
      loop['train_seconds'] += elapsed
      if not np.all(np.isfinite(step_losses)):
        first_bad = int(np.argmin(np.isfinite(step_losses)))
        last = ckpt.latest_step()
        kept = (f'the last good checkpoint (step {last}) is kept'
                if last is not None else 'no checkpoint had been saved yet')
        raise TrainingError(
            f'The training loss became {step_losses[first_bad]} at step '
            f'{step + first_bad}; {kept} and nothing after it is saved. '
            'Lower --config.optimizer.learning_rate or check the inputs.')
      step = stop

      if _due(step, intervals['log'], total_steps):
        rate = (step - (resumed or 0)) * config.batch_size / seconds_this_run
        mean_loss = float(step_losses.mean())
        lr = float(learning_rate(step - 1))
        if plateau.enabled:
          lr *= plateau.scale(state.opt_state)
        log.write(step, {'train/loss': mean_loss, 'learning_rate': lr,
                         'examples_per_second': rate,
                         'data_wait_share': data_seconds / seconds_this_run})
        logs.progress(step, total_steps, steps_per_epoch, mean_loss, rate,
                      data_seconds / seconds_this_run,
                      (total_steps - step) * config.batch_size / rate)

      if _due(step, intervals['eval'], total_steps):
        eval_metrics = evaluate(state.params)
        log.write(step, {'epoch': step / steps_per_epoch, **eval_metrics})
        logging.info('step %d eval: %s', step, ', '.join(
            f'{k} {v:.4f}' for k, v in sorted(eval_metrics.items())))
        loop['early_stopping'], improved, out_of_patience = early_stopping.update(
            loop['early_stopping'], eval_metrics)
        if improved:
          loop['best'] = {'step': step, **eval_metrics}
        if out_of_patience:
          loop['stopped_early'] = True
          logging.info('Early stop at step %d: no better %s in %d evals.',
                       step, config.early_stopping.metric,
                       config.early_stopping.patience)
        loop['plateau'], opt_state, lr_floor = plateau.update(
            loop['plateau'], eval_metrics, state.opt_state,
            mesh_lib.replicated(mesh))
        state = state.replace(opt_state=opt_state)
        if lr_floor:
          loop['stopped_early'] = True
          logging.info('Stop at step %d: the learning-rate multiplier fell '
                       'below %g.', step, config.optimizer.plateau.min_scale)

      stopping = step < total_steps and notice.reached(step)
      if (_due(step, intervals['checkpoint'], total_steps)
          or loop['stopped_early'] or stopping):
        ckpt.save(step, state, loop)
      if stopping:
        raise preemption.Preempted(
            f'Stopped by SIGTERM at step {step} and saved a checkpoint there; '
            'rerun the same command to resume.')
  finally:
    notice.close()
    ckpt.close()
    log.close()

  # ---- Results ----------------------------------------------------------------
  if not eval_metrics:  # resumed after the last step: evaluate what was saved
    eval_metrics = evaluate(state.params)
  results = {
      'step': step, 'epoch': step / steps_per_epoch, **eval_metrics,
      'best': loop['best'], 'stopped_early': loop['stopped_early'],
      'num_params': int(num_params), 'devices': int(mesh.devices.size),
      'train_seconds': loop['train_seconds'],
      'compile_seconds': loop['compile_seconds'],
      'examples_per_second': ((step - (resumed or 0)) * config.batch_size
                              / max(seconds_this_run, 1e-9)),
      'data_wait_share': data_seconds / max(seconds_this_run, 1e-9),
  }
  if is_writer:
    (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  logging.info('Done: %s', json.dumps(results))
  return results
