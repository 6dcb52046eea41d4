"""config.evals (research/evaluators.py): what each config evaluates, and
the mistakes refused before a run starts."""
import pytest

from research import configlib
from research import evaluators
from research import metrics
from research.data import pipeline
from tests.helpers import load_config


def test_without_config_evals_each_eval_split_is_evaluated_as_before():
  mnist = evaluators.from_config(load_config('mnist_nielsen'))
  assert {(e.name, e.split, e.crops) for e in mnist} == {
      ('validation', 'train[50000:]', 1), ('test', 'test', 1)}
  assert {e.counts for e in mnist} == {metrics.classification_counts}
  numbers = evaluators.from_config(load_config('street_numbers', 'mnist'))
  assert {e.counts for e in numbers} == {metrics.sequence_counts}
  assert {e.every_epochs for e in numbers} == {2}  # config.eval_every_epochs


def test_alexnet_validates_the_centre_crop_often_and_ten_crops_at_the_end():
  evals = {e.name: e for e in evaluators.from_config(load_config('alexnet'))}
  assert (evals['validation'].crops, evals['validation'].every_epochs) == (1, 1)
  assert (evals['validation_10crop'].crops,
          evals['validation_10crop'].every_epochs) == (10, 0)


def test_unknown_type_and_ten_crops_of_in_memory_images_are_refused():
  config = load_config('mnist_nielsen')
  config.evals = {'validation': {'type': 'ten_crops', 'split': 'test',
                                 'every_epochs': 1.0}}
  with pytest.raises(configlib.ConfigError, match="Did you mean 'ten_crop'"):
    evaluators.from_config(config)
  with pytest.raises(configlib.ConfigError, match='streamed or prepared'):
    pipeline.create(config.data, 10, 10, seed=0,
                    evals={'validation': ('test', 10)})
