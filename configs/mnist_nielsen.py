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
from configs import common
from research import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, hidden=30, test=False)
  c = configlib.base()
  c.model.name = 'mlp'
  c.model.hidden = (arg.hidden,)
  c.model.num_classes = 10
  c.model.activation = 'sigmoid'
  c.model.weight_init = 'standard_normal'

  common.nielsen_mnist(c, arg.test)  # his split, mini-batch 10, 30 epochs
  c.loss = 'sigmoid_quadratic'
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 3.0
  return c


def get_sweeps(arg=None) -> dict:
  """{sweep name: {config key: values}} for launch/sweep.py: Nielsen ch.1's
  hidden sizes and learning rates, two seeds each."""
  del arg
  return {'hidden': {'model.hidden': [(15,), (30,), (100,)], 'seed': [0, 1]},
          'learning_rate': {'optimizer.learning_rate': [0.5, 1.0, 3.0, 10.0],
                            'seed': [0, 1]}}
