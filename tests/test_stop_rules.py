"""What counts as an improvement for early stopping and the plateau."""
import pytest

from research import configlib
from research import watch
from tests.helpers import load_config


def updates(rule: watch.MetricWatch, values):
  counters, seen = {}, []
  for value in values:
    counters, improved, out = rule.update(counters, {'acc': value})
    seen.append((improved, counters['waited'], out))
  return seen


def test_a_gain_within_min_delta_is_no_improvement():
  values = [0.50, 0.505, 0.52, 0.515, 0.525]
  plain = watch.MetricWatch('acc', 'max', patience=3)
  assert [s[0] for s in updates(plain, values)] == [True, True, True, False,
                                                    True]
  # Gains of 0.005 are noise, 0.015 is progress.
  strict = watch.MetricWatch('acc', 'max', patience=3, min_delta=0.01)
  assert updates(strict, values) == [(True, 0, False), (False, 1, False),
                                     (True, 0, False), (False, 1, False),
                                     (False, 2, False)]
  # Nothing after the first gains a whole point of accuracy: the wait runs out.
  never = watch.MetricWatch('acc', 'max', patience=3, min_delta=1.0)
  assert [s[2] for s in updates(never, values)] == [False, False, False, True,
                                                    False]


def test_min_delta_counts_down_for_a_loss():
  rule = watch.MetricWatch('acc', 'min', patience=2, min_delta=0.1)
  assert [s[0] for s in updates(rule, [1.0, 0.95, 0.85, 0.8])] == [
      True, False, True, False]


@pytest.mark.parametrize('key', ['early_stopping', 'optimizer.plateau'])
def test_a_negative_min_delta_is_refused(key):
  config = load_config('mnist_nielsen')
  rule = config.early_stopping if key == 'early_stopping' else (
      config.optimizer.plateau)
  rule.min_delta = -0.01
  with pytest.raises(configlib.ConfigError, match=f'config.{key}.min_delta'):
    configlib.validate(config)
