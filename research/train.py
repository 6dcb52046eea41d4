"""The one training loop every model uses: `train_and_evaluate(config, workdir)`.

Sections: mesh, input, model and optimizer, compiled step, checkpoint and resume,
loop (train chunks, evals, checkpoints, early stopping), results.

K consecutive steps run as one compiled `lax.scan` over a (K, batch, ...) chunk,
so an MNIST epoch of 5,000 mini-batches is a handful of calls, not a Python loop
per mini-batch. Chunks end where a log, eval or checkpoint is due, so the chunk
boundaries, and with them every number, depend only on the step: a resumed run
repeats an uninterrupted one exactly.
"""
import contextlib
import functools
import json
import signal

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
from research import errors
from research import init_from
from research import logs
from research import losses
from research import mesh as mesh_lib
from research import metrics
from research import models
from research import optim
from research import precise_bn
from research import preemption
from research import profiling
from research import replicas as replicas_lib
from research import stop_rules
from research import stopwatch
from research import workdir as workdir_lib
from research.data import pipeline
from research.data import prepare as prepare_lib


class TrainingError(errors.UserError, RuntimeError):
  """Training cannot go on (e.g. the loss is no longer finite)."""


class TrainState(train_state.TrainState):
  """flax's TrainState whose updates keep its arrays' shardings.

  Left alone, XLA may place the updated state differently from the state it
  was given (on a 'model' axis it may split replicated params over it), and a
  step compiled for one placement refuses the other: the update is
  constrained to `shardings`, one sharding per leaf in leaf order (a tuple:
  static fields must hash); None leaves the choice to XLA.
  """
  shardings: tuple | None = flax.struct.field(pytree_node=False, default=None)
  # The model's BatchNorm running averages ({} for models without BatchNorm).
  batch_stats: dict = flax.struct.field(default_factory=dict)

  def variables(self, params=None) -> dict:
    """What model.apply takes: params (this state's unless given) and any
    batch statistics."""
    params = self.params if params is None else params
    return {'params': params, **({'batch_stats': self.batch_stats}
                                 if self.batch_stats else {})}

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
    variables = model.init(rng, prepare_lib.to_float(sample_images),
                           train=False)
    boxed = variables['params']
    return boxed, TrainState.create(
        apply_fn=model.apply, params=nn.unbox(boxed), tx=tx,
        batch_stats=nn.unbox(variables.get('batch_stats', {})),
        shardings=shardings)

  # Shapes and metadata only: nothing is computed.
  boxed, abstract = jax.eval_shape(init, rng, sample_images)
  param_shardings = mesh_lib.param_shardings(boxed, mesh)
  shardings = abstract.replace(
      step=mesh_lib.replicated(mesh), params=param_shardings,
      opt_state=mesh_lib.like_params(abstract.opt_state, abstract.params,
                                     param_shardings, mesh),
      batch_stats=jax.tree.map(lambda _: mesh_lib.replicated(mesh),
                               abstract.batch_stats))
  flat = tuple(jax.tree.leaves(shardings))
  return jax.jit(lambda rng, images: init(rng, images, flat)[1],
                 out_shardings=shardings.replace(shardings=flat))(
                     rng, sample_images)


def make_train_chunk(model, loss_fn, aux_loss_weight: float = 0.0,
                     prepare=prepare_lib.to_float):
  """(state, batches (K, B, ...), key) -> (state, per-step losses (K,)).

  Logits a model sows in 'aux_logits' during training (GoogLeNet's auxiliary
  classifiers) add their loss times `aux_loss_weight`. `prepare` turns stored
  pixels into model input (research/data/prepare.py).
  """

  def step(state, batch):
    rng = jax.random.fold_in(batch['key'], state.step)

    def mean_loss(params):
      logits, extra = model.apply(
          state.variables(params),
          prepare(prepare_lib.augment_on_device(batch)), train=True,
          rngs={'dropout': rng}, mutable=['aux_logits', 'batch_stats'])
      loss = jnp.mean(loss_fn(logits, batch['label']))
      for (aux,) in extra.get('aux_logits', {}).values():
        loss += aux_loss_weight * jnp.mean(loss_fn(aux, batch['label']))
      return loss, extra.get('batch_stats', state.batch_stats)

    (loss, batch_stats), grads = jax.value_and_grad(
        mean_loss, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), loss

  @functools.partial(jax.jit, donate_argnums=0)
  def train_chunk(state, batches, key):
    if batches['label'].shape[0] == 1:
      # No loop: XLA's CPU convolutions run several times slower inside a
      # while loop, so conv nets use steps_per_call=1 (results/README.md).
      state, loss = step(state, {**jax.tree.map(lambda x: x[0], batches),
                                 'key': key})
      return state, loss[None]
    return jax.lax.scan(
        lambda s, b: step(s, {**b, 'key': key}), state, batches)

  return train_chunk


def make_eval_chunk(model, loss_fn, prepare=prepare_lib.to_float):
  """(variables, batches (N, B, ...) with 'mask') -> summed counts. Images
  (N, B, crops, ...) are scored by their crop-averaged softmax."""

  @jax.jit
  def eval_chunk(variables, batches):
    def counts(batch):
      logits = prepare_lib.crop_averaged_logits(model, variables,
                                                prepare(batch['image']))
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


def _config_changes(workdir, config) -> list[str] | None:
  """What `config` changes against the config.json saved in `workdir`
  (None: none is saved there)."""
  path = workdir / 'config.json'
  if not path.exists():
    return None
  return configlib.differences(json.loads(path.read_text()),
                               json.loads(config.to_json_best_effort()))


def _check_same_experiment(config, workdir, allow_config_change: bool):
  """Refuses to resume a workdir that holds a run of another config."""
  changed = _config_changes(workdir, config)
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
  replicas_lib.validate(config)
  created = workdir_lib.missing_root(workdir)
  workdir = workdir_lib.prepare(workdir)
  try:
    # One run per workdir (process 0 holds the lock for all of them). Also
    # JAX's context mesh while training: AlexNet's towers find the 'model'
    # axis there.
    with (workdir_lib.lock(workdir, 'research.main',
                           enabled=jax.process_index() == 0),
          mesh_lib.context(mesh_lib.make_mesh(config.mesh.model)) as mesh):
      return _train_and_evaluate(config, workdir, allow_config_change, mesh)
  except BaseException:
    # A refused run leaves no empty workdir behind.
    workdir_lib.remove_if_unused(workdir, created)
    raise


def _finished(workdir, config) -> dict | None:
  """The results of a run that finished in `workdir` with this very config:
  its results.json, whose step is its newest checkpoint's."""
  results = workdir / 'results.json'
  if not results.exists() or _config_changes(workdir, config) != []:
    return None
  results = json.loads(results.read_text())
  return results if checkpoints.latest_step(workdir) == results['step'] else None


def _check_finite(step_losses: np.ndarray, first_step: int, ckpt):
  if np.all(np.isfinite(step_losses)):
    return
  bad = int(np.argmin(np.isfinite(step_losses)))
  last = ckpt.latest_step()
  kept = (f'the last good checkpoint (step {last}) is kept'
          if last is not None else 'no checkpoint had been saved yet')
  raise TrainingError(
      f'The training loss became {step_losses[bad]} at step '
      f'{first_step + bad}; {kept} and nothing after it is saved. Lower '
      '--config.optimizer.learning_rate or check the inputs.')


def _disk_full_error(workdir, step: int, error) -> TrainingError:
  last = checkpoints.latest_step(workdir)
  kept = (f'the checkpoint of step {last} is the newest complete one'
          if last is not None else 'no checkpoint was completed')
  reason = next((str(e) for e in errors.causes(error)
                 if isinstance(e, OSError)), '')
  return TrainingError(f'The disk holding {workdir} is full (at step '
                       f'{step}{": " + reason if reason else ""}): {kept}. '
                       'Free space there and rerun the same command to '
                       'resume.')


def _train_and_evaluate(config, workdir, allow_config_change, mesh):
  # Weights from elsewhere bring the arithmetic they were trained with; the
  # config says so before it is compared with, or saved to, the workdir's.
  source = init_from.load(config.init_from) if config.init_from else None
  if source:
    config = init_from.configure(config, source)
  replicas = replicas_lib.Replicas.of(config, workdir)
  configs = replicas.configs(config)
  with contextlib.ExitStack() as stack:
    if replicas.vmapped:  # a seed's own workdir is as busy as the whole run
      for directory in replicas.workdirs:
        stack.enter_context(workdir_lib.lock(
            workdir_lib.prepare(directory), 'research.main',
            enabled=jax.process_index() == 0))
    for c, directory in zip(configs, replicas.workdirs):
      _check_same_experiment(c, directory, allow_config_change)
    finished = [_finished(d, c) for c, d in zip(configs, replicas.workdirs)]
    if all(f is not None for f in finished):  # a rerun changes nothing
      for f, directory in zip(finished, replicas.workdirs):
        logging.info('%s holds this run, finished at step %d: nothing to do. '
                     'Its results.json: %s', directory, f['step'],
                     json.dumps(f))
      return finished if replicas.vmapped else finished[0]
    results = _train(configs, replicas, mesh, source)
  return results if replicas.vmapped else results[0]


def _train(configs, replicas, mesh, source) -> list:
  """Trains `configs` (one, or one per seed of replicas), returns each
  one's results."""
  config = configs[0]
  is_writer = jax.process_index() == 0

  # ---- Mesh -------------------------------------------------------------------
  mesh_lib.check_divisible('batch_size', config.batch_size, mesh)
  mesh_lib.check_divisible('eval_batch_size', config.eval_batch_size, mesh)
  train_sharding = mesh_lib.stacked_batches(mesh, 1 + replicas.vmapped)
  place = lambda chunk: mesh_lib.to_global(chunk, mesh_lib.stacked_batches(mesh))

  # ---- Input ------------------------------------------------------------------
  only_evaluate = config.num_epochs == 0
  train_data, eval_sources = pipeline.create(
      config.data, config.batch_size, config.eval_batch_size, config.seed,
      jax.process_index(), jax.process_count(), train=not only_evaluate)
  prepare = prepare_lib.from_config(config.data)
  steps_per_epoch = 1 if only_evaluate else train_data.steps_per_epoch
  total_steps = (0 if only_evaluate else
                 max(1, round(config.num_epochs * steps_per_epoch)))
  intervals = _boundaries(config, steps_per_epoch)
  # Each seed its own order of the same examples.
  orders = ([train_data.with_seed(c.seed) for c in configs]
            if replicas.vmapped else [train_data])

  # ---- Model and optimizer ----------------------------------------------------
  model = models.build(config.model)
  loss_fn = losses.get(config.loss)
  tx, learning_rate = optim.create(config.optimizer, steps_per_epoch,
                                   total_steps)
  sample = np.asarray(prepare(
      next(iter(eval_sources.values())).first_image() if only_evaluate
      else train_data.sample_images()))
  states, dropout_keys = [], []
  for c in configs:
    init_key, dropout_key = jax.random.split(jax.random.key(c.seed))
    state = create_train_state(model, tx, init_key, sample, mesh)
    # Stacked states leave their placement to XLA (one device's whole models).
    states.append(state.replace(shardings=None) if replicas.vmapped else state)
    dropout_keys.append(dropout_key)
  state, dropout_key = replicas.stack(states), replicas.stack(dropout_keys)
  num_params = sum(x.size for x in jax.tree.leaves(states[0].params))
  logging.info('%s: %s parameters, %d devices, %d steps of %d (%d per epoch)%s',
               config.model.name, f'{num_params:,}', mesh.devices.size,
               total_steps, config.batch_size, steps_per_epoch,
               f', seeds {", ".join(map(str, replicas.seeds))} vmapped'
               if replicas.vmapped else '')

  # ---- Compiled step ----------------------------------------------------------
  train_chunk = replicas.map(make_train_chunk(
      model, loss_fn, config.aux_loss_weight, prepare), donate=True)
  eval_chunk = replicas.map(make_eval_chunk(model, loss_fn, prepare),
                            in_axes=(0, None))

  recompute_stats = (replicas.map(precise_bn.make_recompute(model, prepare))
                     if config.precise_bn_examples and states[0].batch_stats
                     and not only_evaluate else None)
  stats_batches = []  # placed at the first evaluation, then kept

  def evaluate(variables) -> list:
    """Each replica's metrics on every eval split."""
    with chrono.evaluating():
      return _evaluate(variables)

  def _evaluate(variables) -> list:
    if recompute_stats:
      if not stats_batches:  # the first steps' batches: a fixed set of images
        steps = -(-config.precise_bn_examples // config.batch_size)
        stats_batches.append(mesh_lib.to_global(replicas.stack(
            [o.chunk(0, steps) for o in orders]), train_sharding))
      variables = {**variables, 'batch_stats': recompute_stats(
          variables, stats_batches[0])}
    out = [{} for _ in configs]
    for name, source in eval_sources.items():
      sums = None
      for chunk in source.chunks(place):
        counts = eval_chunk(variables, chunk)
        sums = counts if sums is None else jax.tree.map(jnp.add, sums, counts)
      for metrics_i, sums_i in zip(out, replicas.split(jax.device_get(sums))):
        metrics_i.update(metrics.finalize(name, sums_i))
    return out

  # ---- Checkpoint and resume --------------------------------------------------
  ckpts = [checkpoints.Checkpointer(d / 'checkpoints', config.keep_checkpoints)
           for d in replicas.workdirs]
  resumed = _common_step([c.latest_step() for c in ckpts], replicas)
  saved = [{} for _ in configs]
  if resumed is not None:
    restored = [ckpt.restore(resumed, replicas.take(state, i))
                for i, ckpt in enumerate(ckpts)]
    state = replicas.stack([s for s, _ in restored])
    saved = [loop for _, loop in restored]
    logging.info('Resumed from the checkpoint at step %d.', resumed)
  elif source:
    state = state.replace(params=init_from.merge(
        state.params, source, config.model.get('num_classes', 0)))
  # Saved with each checkpoint, so a resumed run goes on with the same
  # bookkeeping: the stop rules' counters and the stopwatch.
  rules = [stop_rules.StopRules(c, s) for c, s in zip(configs, saved)]
  chrono = stopwatch.Stopwatch(saved[0].get('stopwatch'))
  loop_state = lambda i: {**rules[i].state(), 'stopwatch': chrono.state()}
  logs_ = [logs.MetricsLog(d, resumed) for d in replicas.workdirs]
  if is_writer:  # only now: a run refused above must not claim the workdir
    for c, d in zip(configs, replicas.workdirs):
      logs.replace_atomically(d / 'config.json',
                              c.to_json_best_effort(indent=2).encode())

  # ---- Loop -------------------------------------------------------------------
  compiled = {}  # chunk length -> executable, compiled ahead so it is timed apart
  examples_per_step = config.batch_size * len(configs)

  def run_chunk(state, batches):
    length = batches['label'].shape[int(replicas.vmapped)]  # steps
    trace.before_chunk(compiles=length not in compiled)
    if length not in compiled:
      with chrono.compiling():
        compiled[length] = train_chunk.lower(state, batches,
                                             dropout_key).compile()
    return compiled[length](state, batches, dropout_key)

  def load(first, last):
    with chrono.input():
      return mesh_lib.to_global(replicas.stack(
          [o.chunk(first, last - first) for o in orders]), train_sharding)

  step, eval_metrics, batches = int(state.step.reshape(-1)[0]), [], None
  notice = preemption.Notice(step)
  trace = profiling.Trace(replicas.workdirs[0], config.profile, is_writer)
  try:
    try:
      while step < total_steps and not all(r.stopped for r in rules):
        stop = _next_stop(step, intervals, total_steps)
        with chrono.chunk((stop - step) * examples_per_step):
          batches = batches or load(step, stop)
          state, step_losses = run_chunk(state, batches)
          # Stage the next chunk on the device while it runs this one.
          following = _next_stop(stop, intervals, total_steps)
          batches = load(stop, following) if stop < total_steps else None
          step_losses = np.asarray(jax.device_get(step_losses))
        trace.after_chunk(stop - step)
        for losses_i in step_losses.reshape(len(configs), -1):
          _check_finite(losses_i, step, ckpts[0])
        step = stop
        if _due(step, intervals['log'], total_steps):
          _log_training(step, total_steps, steps_per_epoch, step_losses,
                        learning_rate, state, rules, chrono, logs_,
                        (total_steps - step) * examples_per_step)
        if _due(step, intervals['eval'], total_steps):
          eval_metrics = evaluate(state.variables())
          for i, (log, m) in enumerate(zip(logs_, eval_metrics)):
            log.write(step, {'epoch': step / steps_per_epoch, **m})
            logging.info('step %d eval%s: %s', step,
                         f' (seed {configs[i].seed})' if replicas.vmapped
                         else '', ', '.join(f'{k} {v:.4f}'
                                            for k, v in sorted(m.items())))
            # Replicas have no plateau schedule (research/replicas.py).
            state = state.replace(opt_state=rules[i].after_eval(
                step, m, state.opt_state, mesh_lib.replicated(mesh)))
        signum = notice.reached(step) if step < total_steps else None
        if (_due(step, intervals['checkpoint'], total_steps)
            or any(r.stopped for r in rules) or signum):
          with chrono.saving():
            for i, ckpt in enumerate(ckpts):
              ckpt.save(step, replicas.take(state, i), loop_state(i))
        if signum:
          raise preemption.Preempted(
              f'Stopped by {signal.Signals(signum).name} at step {step} and '
              'saved a checkpoint there; rerun the same command to resume.',
              signum)
    finally:
      trace.stop()
      with chrono.saving():
        for ckpt in ckpts:
          ckpt.close()  # waits for the last save to be committed
  except Exception as e:  # pylint: disable=broad-except
    if logs.disk_full(e):
      raise _disk_full_error(replicas.workdirs[0], step, e) from e
    raise
  finally:
    notice.close()
    for log in logs_:
      log.close()

  # ---- Results ----------------------------------------------------------------
  if not eval_metrics:  # resumed after the last step: evaluate what was saved
    eval_metrics = evaluate(state.variables())
  out = []
  for directory, rule, m in zip(replicas.workdirs, rules, eval_metrics):
    results = {
        'step': step, 'epoch': step / steps_per_epoch, **m,
        'best': rule.best, 'stopped_early': rule.stopped,
        'num_params': int(num_params), 'devices': int(mesh.devices.size),
        'train_seconds': chrono.train_seconds,
        'compile_seconds': chrono.compile_seconds,
        'examples_per_second': chrono.examples_per_second,
        'data_wait_share': chrono.data_wait_share,
        'eval_seconds': chrono.eval_seconds,
        'checkpoint_seconds': chrono.checkpoint_seconds,
    }
    if is_writer:
      try:
        logs.replace_atomically(directory / 'results.json',
                                json.dumps(results, indent=2).encode())
      except OSError as e:
        if logs.disk_full(e):
          raise _disk_full_error(directory, step, e) from e
        raise
    logging.info('Done: %s', json.dumps(results))
    out.append(results)
  return out


def _common_step(steps: list, replicas):
  """The step every replica's checkpoints resume from."""
  if len(set(steps)) > 1:
    listing = ', '.join(f'{d}: {s}' for d, s in zip(replicas.workdirs, steps))
    raise configlib.ConfigError(
        f'The seeds of this run have checkpoints of different steps ({listing}) '
        'and cannot be trained together: finish each one alone (rerun it '
        'without config.seeds, --workdir=its folder), or delete them.')
  return steps[0]


def _log_training(step, total_steps, steps_per_epoch, step_losses,
                  learning_rate, state, rules, chrono, logs_, examples_left):
  per_replica = step_losses.reshape(len(logs_), -1).mean(axis=1)
  lr = float(learning_rate(step - 1))
  if rules[0].plateau.enabled:  # one run: replicas have no plateau schedule
    lr *= rules[0].plateau.scale(state.opt_state)
  for log, loss in zip(logs_, per_replica):
    log.write(step, {'train/loss': float(loss), 'learning_rate': lr,
                     'examples_per_second': chrono.examples_per_second,
                     'data_wait_share': chrono.data_wait_share})
  logs.progress(step, total_steps, steps_per_epoch, float(per_replica.mean()),
                chrono, examples_left)
