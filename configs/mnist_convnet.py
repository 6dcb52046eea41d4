r"""Nielsen ch.6 (network3.py): the MNIST convnet, with ReLU units.

  python -m research.main --config=configs/mnist_convnet.py --workdir=runs/convnet \
      --config.data.manual_dir=../shared/data/mnist

Conv 5x5x20, 2x2 max pool, conv 5x5x40, 2x2 max pool, fully connected 100,
softmax (research/models/convnet.py); `SGD(training_data, 60, 10, 0.03,
lmbda=0.1)` on the first 50,000 training images: Nielsen reports 99.23%.
network3.py adds 0.5 * lmbda * |w|^2 / num_training_batches to the mean
mini-batch cost, i.e. weight decay lmbda / 5,000 per step.

Arguments (FILE:ARG):
  'quick'  two epochs of Adam (batch 64, lr 1e-3): about 99% in about a
           minute on 2 CPU cores; the model `python -m research.visualize
           demo` trains when it is given no run.
  'test'   a seconds-long run on a slice of MNIST.
"""
from configs import common
from research import configlib

NUM_TRAINING_BATCHES = 5_000  # 50,000 images in mini-batches of 10
L2_LAMBDA = 0.1


def get_config(arg=None):
  arg = configlib.parse_arg(arg, quick=False, test=False)
  c = configlib.base()
  common.nielsen_mnist(c, arg.test)  # ch.1's split and mini-batch 10
  c.model.name = 'convnet'
  c.model.features = (20, 40)
  c.model.kernel = 5
  c.model.hidden = (100,)
  c.model.num_classes = 10
  c.model.dropout = 0.0
  c.loss = 'softmax_cross_entropy'
  c.optimizer.name = 'sgd'
  c.optimizer.learning_rate = 0.03
  c.optimizer.weight_decay = L2_LAMBDA / NUM_TRAINING_BATCHES
  c.steps_per_call = 1  # XLA's CPU convolutions are slow inside lax.scan
  if not arg.test:
    c.num_epochs = 60
  if arg.quick or arg.test:
    c.optimizer.name = 'adam'
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.batch_size = 64
    c.log_every_steps = 100
  if arg.quick:
    c.num_epochs = 2
  return c
