"""What the loop evaluates, and how often: evaluators built from the config,
as big_vision's `evaluators/common.py` builds them.

  config.evals.NAME = {'type': TYPE, 'split': 'validation', 'every_epochs': 1.0}

TYPE is 'classification' (loss, top-1 and top-5 of the centre crop),
'ten_crop' (the same, of the softmax averaged over 10 crops: the four corners,
the centre and their mirror images, AlexNet section 4.1; streamed or prepared
ImageNet only) or 'sequence' (street numbers: sequence, length and digit
accuracy, coverage). `every_epochs` 0 evaluates only at the end of training,
where a costly evaluation belongs. Metrics are named NAME/metric.

Without config.evals, each entry NAME: SPLIT of config.data.eval_splits is
evaluated every config.eval_every_epochs, with config.data.eval_crops crops,
as a sequence evaluator under the sequence loss and a classification one
otherwise.
"""
from typing import Callable, NamedTuple

from research import configlib
from research import metrics

TYPES = {  # type -> (summed counts of a batch, crops)
    'classification': (metrics.classification_counts, 1),
    'ten_crop': (metrics.classification_counts, 10),
    'sequence': (metrics.sequence_counts, 1),
}


class Evaluator(NamedTuple):
  name: str
  counts: Callable  # (logits, labels, mask, per-example loss) -> summed counts
  split: str
  crops: int
  every_epochs: float  # 0: only at the end


def from_config(config) -> list[Evaluator]:
  if not config.evals:
    kind = ('sequence' if config.loss == 'sequence_log_likelihood'
            else 'classification')
    return [Evaluator(name, TYPES[kind][0], split, config.data.eval_crops,
                      config.eval_every_epochs)
            for name, split in config.data.eval_splits.items()]
  out = []
  for name, spec in config.evals.items():
    configlib.choose(f'config.evals.{name}.type', spec.type, TYPES)
    if not spec.every_epochs >= 0:
      raise configlib.ConfigError(
          f'config.evals.{name}.every_epochs is {spec.every_epochs!r}; it must '
          'be a positive number of epochs, or 0 for the end of training only.')
    counts, crops = TYPES[spec.type]
    out.append(Evaluator(name, counts, spec.split, crops, spec.every_epochs))
  return out
