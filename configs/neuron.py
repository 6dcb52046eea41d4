r"""One sigmoid neuron learns "green and not red" from the 8 stoplight states.

  python -m research.main --config=configs/neuron.py --workdir=/tmp/neuron

The rule is linearly separable (green - red - 0.5 > 0), so gradient descent on
the cross-entropy finds weights whose sign of w . x + b matches it on all 8.
"""
from research import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, test=False)
  c = configlib.base()
  c.model.name = 'neuron'
  c.data.name = 'stoplight'       # in memory: every split is the 8 states
  c.data.eval_splits = {'test': 'all'}
  c.early_stopping.metric = 'test/accuracy'
  c.loss = 'sigmoid_cross_entropy'
  c.batch_size = 8
  c.eval_batch_size = 8
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 1.0
  c.num_epochs = 300 if arg.test else 2000
  c.log_every_steps = 100
  c.eval_every_epochs = 100
  c.checkpoint_every_epochs = 1000
  return c
