"""The seed's stoplight: three lamps (green, yellow, red), each on or off.

The target is "green and not red", which one neuron can represent: it equals
green - red - 0.5 > 0 on all 8 states. Train, validation and test are the same
8 states; the question is whether the neuron can represent the rule, not whether
it generalises.
"""
import itertools

import numpy as np

LAMPS = ('green', 'yellow', 'red')


def rule(states: np.ndarray) -> np.ndarray:
  green, _, red = states.T
  return (green - red - 0.5 > 0).astype(np.int32)


def load() -> dict:
  states = np.array(list(itertools.product((0.0, 1.0), repeat=3)), np.float32)
  return {'image': states, 'label': rule(states)}
