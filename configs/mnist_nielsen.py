r"""Nielsen, Neural Networks and Deep Learning, ch.1: network.py on MNIST.

  python -m research.main --config=configs/mnist_nielsen.py --workdir=/tmp/nielsen \
      --config.data.manual_dir=../shared/data/mnist

`Network([784, 30, 10])`, sigmoid units, quadratic cost, N(0, 1) weights and
biases, `SGD(training_data, 30, 10, 3.0)`: 30 epochs of mini-batch 10 at eta 3.0
on the file's first 50,000 training images; the other 10,000 are validation.
Nielsen reports 95.42% (best epoch of 3 runs).

Arguments (FILE:ARG): 'hidden=15' gives the seed article's 784-15-10 net
(11,935 parameters); 'test' a seconds-long run on a slice of MNIST.
"""
from research import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, hidden=30, test=False)
  c = configlib.base()
  c.model.name = 'mlp'
  c.model.hidden = (arg.hidden,)
  c.model.num_classes = 10
  c.model.activation = 'sigmoid'
  c.model.weight_init = 'standard_normal'

  c.data.name = 'mnist'
  c.data.restore_file_order = True   # Nielsen's split is by position in the file
  c.data.train_split = 'train[:50000]'
  c.data.eval_splits = {'validation': 'train[50000:]', 'test': 'test'}

  c.loss = 'sigmoid_quadratic'
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 3.0
  c.batch_size = 10
  c.eval_batch_size = 1000
  c.num_epochs = 30
  c.log_every_steps = 1000
  c.steps_per_call = 1000

  if arg.test:
    c.data.train_split = 'train[:2000]'
    c.data.eval_splits = {'validation': 'train[50000:51000]', 'test': 'test[:1000]'}
    c.num_epochs = 2
    c.log_every_steps = 100
  return c


def get_sweeps(arg=None) -> dict:
  """{sweep name: {config key: values}} for launch/sweep.py: Nielsen ch.1's
  hidden sizes and learning rates, two seeds each."""
  del arg
  return {'hidden': {'model.hidden': [(15,), (30,), (100,)], 'seed': [0, 1]},
          'learning_rate': {'optimizer.learning_rate': [0.5, 1.0, 3.0, 10.0],
                            'seed': [0, 1]}}
