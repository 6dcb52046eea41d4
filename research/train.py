"""The one training loop every model uses: `train_and_evaluate(config, workdir)`.

Read down: train_and_evaluate (one run per workdir) -> _resume_or_skip (a
finished run is left as it is) -> _train, the loop itself, whose every line is
a step of the story told by a _Run's methods: build the input, the model and
its compiled functions (research/steps.py), restore or initialise, then train
a chunk, log, evaluate, checkpoint, and write the results. What one seed owns
(several train together under config.seeds) is a _Seed.

K consecutive steps run as one compiled `lax.scan` over a (K, batch, ...) chunk,
so an MNIST epoch of 5,000 mini-batches is a handful of calls, not a Python loop
per mini-batch. Chunks end where a log, eval or checkpoint is due, so the chunk
boundaries, and with them every number, depend only on the step: a resumed run
repeats an uninterrupted one exactly.
"""
import contextlib
import dataclasses
import json
import signal
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from research import checkpoints
from research import configlib
from research import errors
from research import evaluators
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
from research import steps
from research import stop_rules
from research import stopwatch
from research import workdir as workdir_lib
from research.data import pipeline
from research.data import prepare as prepare_lib


class TrainingError(errors.UserError, RuntimeError):
  """Training cannot go on (e.g. the loss is no longer finite)."""


def _boundaries(config, steps_per_epoch: int, evals) -> dict:
  """Steps between the loop's events; a chunk of steps ends at each."""
  every = lambda epochs: max(1, round(epochs * steps_per_epoch))
  return {'log': config.log_every_steps,
          'checkpoint': every(config.checkpoint_every_epochs),
          'call': config.steps_per_call,
          **{f'eval:{e.name}': every(e.every_epochs) for e in evals
             if e.every_epochs}}


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
      return _resume_or_skip(config, workdir, allow_config_change, mesh)
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


def _resume_or_skip(config, workdir, allow_config_change, mesh):
  """Refuses a workdir of another experiment, returns a finished run's
  results untouched, trains the rest."""
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
  """Trains `configs` (one, or one per seed of replicas) and returns each
  one's results: the story of a step, told by _Run's methods."""
  run = _Run(configs, replicas, mesh, source)
  state, step, batches = run.state, run.first_step, None
  with run.closing(lambda: step):
    while step < run.total_steps and not run.stopped:
      stop = run.next_stop(step)
      state, step_losses, batches = run.train_chunk(state, step, stop, batches)
      step = stop
      if run.due(step, 'log'):
        run.log_training(step, state, step_losses)
      if due := run.due_evals(step):
        state = run.evaluate_and_watch(step, state, due)
      run.save_if_due(step, state)
  # Every evaluator's metrics at the last step: those that ran only at the
  # end, after an early stop or a resume past the last step, run now.
  return run.write_results(step, run.evaluate_rest(step, state))


@dataclasses.dataclass
class _Seed:
  """What one seed of the run owns: its config and workdir, its order of the
  training examples, its checkpoints, stop rules and metrics log."""
  config: ml_collections.ConfigDict
  workdir: epath.Path
  order: Any  # the training data in this seed's order (research/data/pipeline.py)
  ckpt: checkpoints.Checkpointer
  rules: stop_rules.StopRules | None = None
  log: logs.MetricsLog | None = None


class _Run:
  """A run being trained: its input, model and compiled functions, its seeds
  and its stopwatch, built (and restored from the last checkpoint) at
  construction; the loop in _train calls the rest, in order."""

  def __init__(self, configs, replicas, mesh, source):
    config = self.config = configs[0]
    self.replicas, self.mesh = replicas, mesh
    self.is_writer = jax.process_index() == 0
    self._build_input()
    self.seeds = [
        _Seed(c, d, self.train_data.with_seed(c.seed) if replicas.vmapped
              else self.train_data,
              checkpoints.Checkpointer(d / 'checkpoints',
                                       config.keep_checkpoints))
        for c, d in zip(configs, replicas.workdirs)]
    self._build_model()
    self._restore_or_init(source)
    self.first_step = int(self.state.step.reshape(-1)[0])
    self.examples_per_step = config.batch_size * len(configs)
    self.compiled = {}  # chunk length -> executable, compiled ahead (timed apart)
    self.latest = {}  # evaluator name -> (step, each seed's metrics)
    self.notice = preemption.Notice(self.first_step)
    self.trace = profiling.Trace(replicas.workdirs[0], config.profile,
                                 self.is_writer)

  # ---- Building ---------------------------------------------------------------

  def _build_input(self):
    config, mesh = self.config, self.mesh
    mesh_lib.check_divisible('batch_size', config.batch_size, mesh)
    mesh_lib.check_divisible('eval_batch_size', config.eval_batch_size, mesh)
    self.train_sharding = mesh_lib.stacked_batches(
        mesh, 1 + self.replicas.vmapped)
    self.only_evaluate = config.num_epochs == 0
    self.evaluators = evaluators.from_config(config)
    self.train_data, self.eval_sources = pipeline.create(
        config.data, config.batch_size, config.eval_batch_size, config.seed,
        jax.process_index(), jax.process_count(), train=not self.only_evaluate,
        evals={e.name: (e.split, e.crops) for e in self.evaluators})
    self.prepare = prepare_lib.from_config(config.data)
    self.steps_per_epoch = (1 if self.only_evaluate
                            else self.train_data.steps_per_epoch)
    self.total_steps = (0 if self.only_evaluate else max(
        1, round(config.num_epochs * self.steps_per_epoch)))
    self.intervals = _boundaries(config, self.steps_per_epoch, self.evaluators)

  def _build_model(self):
    config, replicas, mesh = self.config, self.replicas, self.mesh
    model = models.build(config.model)
    loss_fn = losses.get(config.loss)
    tx, self.learning_rate = optim.create(config.optimizer,
                                          self.steps_per_epoch,
                                          self.total_steps)
    sample = np.asarray(self.prepare(
        next(iter(self.eval_sources.values())).first_image()
        if self.only_evaluate else self.train_data.sample_images()))
    states, dropout_keys = [], []
    for seed in self.seeds:
      init_key, dropout_key = jax.random.split(jax.random.key(seed.config.seed))
      state = steps.create_train_state(model, tx, init_key, sample, mesh)
      # Stacked states leave their placement to XLA (one device's whole models).
      states.append(state.replace(shardings=None) if replicas.vmapped
                    else state)
      dropout_keys.append(dropout_key)
    self.state = replicas.stack(states)
    self.dropout_key = replicas.stack(dropout_keys)
    self.num_params = sum(x.size for x in jax.tree.leaves(states[0].params))
    logging.info('%s: %s parameters, %d devices, %d steps of %d (%d per '
                 'epoch)%s', config.model.name, f'{self.num_params:,}',
                 mesh.devices.size, self.total_steps, config.batch_size,
                 self.steps_per_epoch,
                 f', seeds {", ".join(map(str, replicas.seeds))} vmapped'
                 if replicas.vmapped else '')
    self.train_chunk_fn = replicas.map(steps.make_train_chunk(
        model, loss_fn, config.aux_loss_weight, self.prepare), donate=True)
    chunks = {}  # one compiled function per kind of counts
    self.eval_chunks = {e.name: chunks.setdefault(e.counts, replicas.map(
        steps.make_eval_chunk(model, loss_fn, e.counts, self.prepare),
        in_axes=(0, None))) for e in self.evaluators}
    self.recompute_stats = (
        replicas.map(precise_bn.make_recompute(model, self.prepare))
        if config.precise_bn_examples and states[0].batch_stats
        and not self.only_evaluate else None)
    self.stats_batches = None  # placed at the first evaluation, then kept

  def _restore_or_init(self, source):
    """Resumes from the seeds' last checkpoint, or starts from `source`'s
    weights (init_from) or the model's own init; then claims the workdirs."""
    replicas, seeds = self.replicas, self.seeds
    resumed = _common_step([s.ckpt.latest_step() for s in seeds], replicas)
    saved = [{} for _ in seeds]
    if resumed is not None:
      restored = [s.ckpt.restore(resumed, replicas.take(self.state, i))
                  for i, s in enumerate(seeds)]
      self.state = replicas.stack([state for state, _ in restored])
      saved = [loop for _, loop in restored]
      logging.info('Resumed from the checkpoint at step %d.', resumed)
    elif source:
      self.state = self.state.replace(params=init_from.merge(
          self.state.params, source, self.config.model.get('num_classes', 0)))
    # Saved with each checkpoint, so a resumed run goes on with the same
    # bookkeeping: the stop rules' counters and the stopwatch.
    for seed, loop in zip(seeds, saved):
      seed.rules = stop_rules.StopRules(seed.config, loop)
      seed.log = logs.MetricsLog(seed.workdir, resumed)
    self.chrono = stopwatch.Stopwatch(saved[0].get('stopwatch'))
    if self.is_writer:  # only now: a run refused above must not claim them
      for seed in seeds:
        logs.replace_atomically(
            seed.workdir / 'config.json',
            seed.config.to_json_best_effort(indent=2).encode())

  # ---- The loop's steps ------------------------------------------------------

  @property
  def stopped(self) -> bool:
    return all(s.rules.stopped for s in self.seeds)

  def next_stop(self, step: int) -> int:
    return _next_stop(step, self.intervals, self.total_steps)

  def due(self, step: int, what: str) -> bool:
    return _due(step, self.intervals[what], self.total_steps)

  def train_chunk(self, state, step: int, stop: int, batches):
    """Trains steps [step, stop); returns the state, the steps' losses and
    the next chunk's batches, staged on the device while this one ran."""
    with self.chrono.chunk((stop - step) * self.examples_per_step):
      batches = batches or self._load(step, stop)
      state, step_losses = self._run_chunk(state, batches)
      following = self.next_stop(stop)
      batches = self._load(stop, following) if stop < self.total_steps else None
      step_losses = np.asarray(jax.device_get(step_losses))
    self.trace.after_chunk(stop - step)
    for losses_i in step_losses.reshape(len(self.seeds), -1):
      _check_finite(losses_i, step, self.seeds[0].ckpt)
    return state, step_losses, batches

  def _load(self, first: int, last: int):
    with self.chrono.input():
      return mesh_lib.to_global(self.replicas.stack(
          [s.order.chunk(first, last - first) for s in self.seeds]),
                                self.train_sharding)

  def _run_chunk(self, state, batches):
    length = batches['label'].shape[int(self.replicas.vmapped)]  # steps
    self.trace.before_chunk(compiles=length not in self.compiled)
    if length not in self.compiled:
      with self.chrono.compiling():
        self.compiled[length] = self.train_chunk_fn.lower(
            state, batches, self.dropout_key).compile()
    return self.compiled[length](state, batches, self.dropout_key)

  def log_training(self, step: int, state, step_losses):
    per_seed = step_losses.reshape(len(self.seeds), -1).mean(axis=1)
    lr = float(self.learning_rate(step - 1))
    rules = self.seeds[0].rules
    if rules.plateau.enabled:  # one run: replicas have no plateau schedule
      lr *= rules.plateau.scale(state.opt_state)
    for seed, loss in zip(self.seeds, per_seed):
      seed.log.write(step, {
          'train/loss': float(loss), 'learning_rate': lr,
          'examples_per_second': self.chrono.examples_per_second,
          'data_wait_share': self.chrono.data_wait_share})
    logs.progress(step, self.total_steps, self.steps_per_epoch,
                  float(per_seed.mean()), self.chrono,
                  (self.total_steps - step) * self.examples_per_step)

  def due_evals(self, step: int) -> list[str]:
    """The evaluators due at `step`: by their cadence, and all at the end."""
    return [e.name for e in self.evaluators
            if step == self.total_steps
            or (e.every_epochs and self.due(step, f'eval:{e.name}'))]

  def evaluate_and_watch(self, step: int, state, names: list[str]):
    """Runs the evaluators `names`, logs their metrics and lets each seed's
    stop rules see them (which may lower its learning rate or stop it)."""
    eval_metrics = self.evaluate(step, state.variables(), names)
    for seed, m in zip(self.seeds, eval_metrics):
      seed.log.write(step, {'epoch': step / self.steps_per_epoch, **m})
      logging.info('step %d eval%s: %s', step,
                   f' (seed {seed.config.seed})' if self.replicas.vmapped
                   else '', ', '.join(f'{k} {v:.4f}'
                                      for k, v in sorted(m.items())))
      # Replicas have no plateau schedule (research/replicas.py).
      state = state.replace(opt_state=seed.rules.after_eval(
          step, m, state.opt_state, mesh_lib.replicated(self.mesh)))
    return state

  def evaluate_rest(self, step: int, state) -> list:
    """Each seed's metrics of every evaluator at `step`, running those that
    have not run there."""
    rest = [e.name for e in self.evaluators
            if self.latest.get(e.name, (None,))[0] != step]
    if rest:
      self.evaluate(step, state.variables(), rest)
    out = [{} for _ in self.seeds]
    for e in self.evaluators:
      for metrics_i, m in zip(out, self.latest[e.name][1]):
        metrics_i.update(m)
    return out

  def evaluate(self, step: int, variables, names: list[str]) -> list:
    """Each seed's metrics of the evaluators `names`, kept as the latest."""
    with self.chrono.evaluating():
      if self.recompute_stats:
        variables = {**variables, 'batch_stats': self.recompute_stats(
            variables, self._stats_batches())}
      out = [{} for _ in self.seeds]
      place = lambda chunk: mesh_lib.to_global(
          chunk, mesh_lib.stacked_batches(self.mesh))
      for name in names:
        sums = None
        for chunk in self.eval_sources[name].chunks(place):
          counts = self.eval_chunks[name](variables, chunk)
          sums = (counts if sums is None
                  else jax.tree.map(jnp.add, sums, counts))
        each = [metrics.finalize(name, sums_i)
                for sums_i in self.replicas.split(jax.device_get(sums))]
        self.latest[name] = (step, each)
        for metrics_i, m in zip(out, each):
          metrics_i.update(m)
      return out

  def _stats_batches(self):
    """PreciseBN's images: the first steps' batches, a fixed set."""
    if self.stats_batches is None:
      count = -(-self.config.precise_bn_examples // self.config.batch_size)
      self.stats_batches = mesh_lib.to_global(self.replicas.stack(
          [s.order.chunk(0, count) for s in self.seeds]), self.train_sharding)
    return self.stats_batches

  def save_if_due(self, step: int, state):
    """A checkpoint where one is due, training stops, or a signal asked to
    stop; then, for a signal, ends the run (rerunning resumes)."""
    signum = self.notice.reached(step) if step < self.total_steps else None
    if (self.due(step, 'checkpoint') or any(s.rules.stopped for s in self.seeds)
        or signum):
      with self.chrono.saving():
        for i, seed in enumerate(self.seeds):
          seed.ckpt.save(step, self.replicas.take(state, i),
                         {**seed.rules.state(),
                          'stopwatch': self.chrono.state()})
    if signum:
      raise preemption.Preempted(
          f'Stopped by {signal.Signals(signum).name} at step {step} and '
          'saved a checkpoint there; rerun the same command to resume.',
          signum)

  @contextlib.contextmanager
  def closing(self, current_step):
    """Waits for the last checkpoint and closes the logs however the loop
    ends; a full disk becomes one paragraph (at `current_step()`)."""
    try:
      try:
        yield
      finally:
        self.trace.stop()
        with self.chrono.saving():
          for seed in self.seeds:
            seed.ckpt.close()  # waits for the last save to be committed
    except Exception as e:  # pylint: disable=broad-except
      if logs.disk_full(e):
        raise _disk_full_error(self.replicas.workdirs[0], current_step(),
                               e) from e
      raise
    finally:
      self.notice.close()
      for seed in self.seeds:
        seed.log.close()

  # ---- Results ----------------------------------------------------------------

  def write_results(self, step: int, eval_metrics: list) -> list:
    """Each seed's results.json: the last evaluation, the best one, and the
    run's figures."""
    chrono, out = self.chrono, []
    for seed, m in zip(self.seeds, eval_metrics):
      results = {
          'step': step, 'epoch': step / self.steps_per_epoch, **m,
          'best': seed.rules.best, 'stopped_early': seed.rules.stopped,
          'num_params': int(self.num_params),
          'devices': int(self.mesh.devices.size),
          **{k: getattr(chrono, k) for k in stopwatch.TIMINGS},
      }
      if self.is_writer:
        try:
          logs.replace_atomically(seed.workdir / 'results.json',
                                  json.dumps(results, indent=2).encode())
        except OSError as e:
          if logs.disk_full(e):
            raise _disk_full_error(seed.workdir, step, e) from e
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
