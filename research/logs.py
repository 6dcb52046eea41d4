"""Where a run's numbers go: DIR/metrics.jsonl, TensorBoard events and the log.

Only process 0 writes files. On resume, lines past the restored step are dropped
from metrics.jsonl, because the resumed run writes them again identically.
"""
import json
import logging as std_logging

import jax
from absl import logging
from etils import epath


class QuietLibraries(std_logging.Filter):
  """Keeps Orbax's and TFDS's INFO chatter out of the progress display:
  `logging.get_absl_handler().addFilter(QuietLibraries())`."""

  def filter(self, record):
    return record.levelno > std_logging.INFO or not any(
        part in record.pathname for part in ('/orbax/', '/tensorflow_datasets/'))


class MetricsLog:

  def __init__(self, workdir: epath.Path, resumed_step: int | None):
    self.enabled = jax.process_index() == 0
    self.path = workdir / 'metrics.jsonl'
    if self.enabled and resumed_step is not None and self.path.exists():
      keep = [line for line in self.path.read_text().splitlines()
              if line and json.loads(line)['step'] <= resumed_step]
      self.path.write_text(''.join(line + '\n' for line in keep))
    self.tensorboard = None
    if self.enabled:
      # clu's TensorBoard writer needs TensorFlow; importing it here keeps
      # the models, the step and research.bench free of TensorFlow, so they
      # run on accelerator images that lack it.
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self.tensorboard = metric_writers.AsyncWriter(
          metric_writers.SummaryWriter(str(workdir)))

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    with self.path.open('a') as f:
      f.write(json.dumps({'step': step, **metrics}) + '\n')
    self.tensorboard.write_scalars(step, metrics)

  def close(self):
    if self.tensorboard:
      self.tensorboard.close()


def progress(step: int, total: int, steps_per_epoch: int, loss: float,
             examples_per_s: float, data_share: float, seconds_left: float):
  logging.info('step %d/%d (epoch %.2f) loss %.4f | %s examples/s | '
               'input %.0f%% of time | %s left', step, total,
               step / steps_per_epoch, loss, f'{examples_per_s:,.0f}',
               100 * data_share, _duration(seconds_left))


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'
