r"""Multi-digit street numbers: Goodfellow et al. 2013 (arXiv 1312.6082).

  python -m research.main --config=configs/street_numbers.py --workdir=runs/svhn \
      --config.data.manual_dir=DIR   # SVHN's train.tar.gz, test.tar.gz, extra.tar.gz
  python -m launch.sweep --config=configs/street_numbers.py:mnist,batchnorm \
      --sweep=depth --workdir=runs/depth_paper --parallel=2 \
      --config.data.name=mnist_multidigit/paper --config.data.manual_dir=../shared/data/mnist

Default: the paper's 11-hidden-layer network (research/models/street_numbers.py)
on SVHN format 1 (research/data/svhn_full.py): the digits' box expanded 30%,
resized to 64x64, random 54x54 crops in training and the centre crop in
evaluation, each image minus its mean (section 5.1). A smaller input keeps
the 54x54 crop and resizes it (--config.data.crop_size=54
--config.data.image_size=32): a 32x32 crop of the frame would cut the number
off, and is refused. Training data is train
plus extra less 5,400 images kept for validation; test is SVHN's test set.
The paper trained with asynchronous SGD on 10 replicas for 6 days and gives
no learning rate; here SGD with momentum 0.9, lr 0.01, batch 128.

Arguments (FILE:ARG):
  'mnist'   the same architecture at an eighth of the width (6..24 conv units,
            384 dense) on numbers composed from MNIST digits
            (research/data/multidigit.py, offline from
            --config.data.manual_dir=../shared/data/mnist), 6 epochs of Adam
            1e-3 with warm-up and cosine decay, batch 32.
            --config.data.name=mnist_multidigit/paper trains on 235,755
            numbers, as many as SVHN's train + extra, instead of 60,000:
            with 'batchnorm' and --sweep=depth, mean of 2 seeds, 76.3% at 3
            hidden layers, 90.5% at 5, 92.7% at 7, 92.4% at 9 and 91.9% at
            11: a rise to 7 layers, not Fig. 5's beyond it; 30-85 min a
            point on one core (results/depth_paper/results.md).
  'batchnorm' BatchNorm before every maxout/ReLU (model.norm='batch'), Adam
            5e-3 after half an epoch of warm-up, the statistics recomputed
            over 3,200 training images before each evaluation
            (precise_bn_examples), an evaluation every epoch: the CPU variant
            of the depth sweep, with which deep nets train within a CPU
            budget; the paper used no normalisation. Its depth sweep, each
            net scored at its best validation epoch as in section 5.1:
  python -m launch.sweep --config=configs/street_numbers.py:mnist,batchnorm \
      --sweep=depth --workdir=runs/depth --parallel=2 \
      --config.data.manual_dir=../shared/data/mnist
            gave, mean of 2 seeds, test sequence accuracy 63.4% at 3 hidden
            layers, 83.4% at 5, 87.0% at 7, 86.2% at 9 and 79.1% at 11: not
            Fig. 5's rise with depth; 15-30 min a point on one core
            (results/depth_protocol/results.md).
  'cropped' the per-digit baseline: one 10-way softmax on TFDS svhn_cropped
            (32x32 single digits, random 28x28 crops).
  'test'    a few steps of a small, narrow model on mnist_multidigit/small,
            for CI and smoke runs (also 'cropped,test').

Sweeps (python -m launch.sweep --sweep=NAME): 'depth' is Fig. 5, sequence
accuracy against hidden layers 3..11 (one fully connected layer up to 7, two
from 8, as in Fig. 5's legend), two seeds per depth; 'width' scales every
layer's units.
"""
from ml_collections import config_dict

from research import configlib

MNIST_EPOCHS = 6
# Adam's rate and warm-up for the BatchNorm nets: for the 11-layer net, 1e-3
# (the plain nets') trained to 48.5% in 2 epochs, 3e-3 (warm-up 0.1 epoch)
# to 54-59%, 5e-3 with half an epoch of warm-up to 58.5%; 1e-2 diverged.
BATCHNORM_LEARNING_RATE = 5e-3
BATCHNORM_WARMUP_EPOCHS = 0.5
# Training images over which BatchNorm's statistics are recomputed before
# each evaluation (PreciseBN): +0.4 points at 7 layers, +2.5 at 11.
BATCHNORM_PRECISE_EXAMPLES = 3200

# Drawn beside a sweep's curve (launch/sweep_report.py): Fig. 5, sequence
# accuracy (%) on SVHN by hidden layers, read off the figure.
SWEEP_REFERENCES = {'depth': ('Goodfellow et al. 2013, SVHN (Fig. 5)', {
    3: 92.3, 4: 93.6, 5: 94.7, 6: 95.3, 7: 95.6, 8: 95.7, 9: 95.9, 11: 96.0})}


def get_config(arg=None):
  arg = configlib.parse_arg(arg, mnist=False, batchnorm=False, cropped=False,
                            test=False)
  c = configlib.base()
  c.model.name = 'street_numbers'
  c.model.hidden_layers = 11
  # None: Fig. 5's layout (one fully connected layer at 3-7 hidden layers,
  # two from 8 on); 2 gives every depth two, a variant that isolates depth
  # in the convolutions.
  c.model.dense_layers = config_dict.placeholder(int)
  c.model.dense_units = 3072
  c.model.width = 1.0
  # Set: the width of the convolutions on maps of 7x7 or less instead.
  c.model.small_map_width = config_dict.placeholder(float)
  c.model.dropout = 0.2
  c.model.per_digit = False
  c.model.norm = 'none'  # the paper; batch | layer | group (layers.Norm)
  # The 11-layer net's 9th hidden layer is locally connected (section 5.1);
  # False makes it a shared-weight convolution.
  c.model.locally_connected = True
  c.model.dtype = 'float32'

  c.data.name = 'svhn_full'
  c.data.train_split = 'train[5400:]+extra'
  c.data.eval_splits = {'validation': 'train[:5400]', 'test': 'test'}
  c.data.augment = 'random_crop'
  c.data.image_size = 54
  c.data.subtract_image_mean = True

  c.loss = 'sequence_log_likelihood'
  c.optimizer.name = 'momentum'
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 10
  c.log_every_steps = 200
  c.eval_every_epochs = 1.0
  c.steps_per_call = 1  # conv nets: see research/train.py
  c.early_stopping.metric = 'validation/sequence_accuracy'
  c.optimizer.plateau.metric = 'validation/sequence_accuracy'

  if arg.cropped:  # the per-digit baseline
    c.model.per_digit = True
    c.model.hidden_layers = 8
    c.data.name = 'svhn_cropped'
    c.data.train_split = 'train[5000:]'
    c.data.eval_splits = {'validation': 'train[:5000]', 'test': 'test'}
    c.data.image_size = 28
    c.loss = 'softmax_cross_entropy'
    c.early_stopping.metric = 'validation/accuracy'
    c.optimizer.plateau.metric = 'validation/accuracy'
  elif arg.mnist or arg.test:  # MNIST numbers, at a size a CPU trains
    c.data.name = 'mnist_multidigit'
    c.data.train_split = 'train'
    c.data.eval_splits = {'validation': 'validation[:2000]', 'test': 'test'}
    c.model.width = 0.125
    c.model.dropout = 0.0  # dropout slowed the first 450 steps of this budget
    c.optimizer.name = 'adam'
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule.name = 'cosine'
    # Deep plain stacks sit at chance for hundreds of steps at full rate.
    c.optimizer.schedule.warmup_epochs = 0.1
    c.batch_size = 32
    c.num_epochs = MNIST_EPOCHS
    c.eval_every_epochs = 2
    c.checkpoint_every_epochs = 1
  if arg.batchnorm:
    c.model.norm = 'batch'
    c.optimizer.learning_rate = BATCHNORM_LEARNING_RATE
    c.optimizer.schedule.warmup_epochs = BATCHNORM_WARMUP_EPOCHS
    c.precise_bn_examples = BATCHNORM_PRECISE_EXAMPLES
    # Every epoch: the sweep scores each net at its best validation epoch.
    c.eval_every_epochs = 1
  if arg.test:
    if not arg.cropped:
      c.data.name = 'mnist_multidigit/small'
    c.model.hidden_layers = 4
    c.model.width = 0.125
    c.model.dense_units = 512
    c.data.train_split = 'train[:256]'
    c.data.eval_splits = {'validation': 'validation[:64]', 'test': 'test[:64]'}
    c.batch_size = c.eval_batch_size = 32
    c.num_epochs = 2
    c.log_every_steps = 4
    c.eval_every_epochs = 1
    c.checkpoint_every_epochs = 1
  return c


def get_sweeps(arg=None) -> dict:
  """{sweep name: {config key: values}}; a sweep runs every combination."""
  arg = configlib.parse_arg(arg, mnist=False, batchnorm=False, cropped=False,
                            test=False)
  if arg.test:
    return {'depth': {'model.hidden_layers': [3, 4], 'seed': [0]},
            'width': {'model.width': [0.0625, 0.125], 'seed': [0]}}
  return {'depth': {'model.hidden_layers': [3, 5, 7, 9, 11], 'seed': [0, 1]},
          'width': {'model.width': [0.125, 0.25, 0.5], 'seed': [0, 1]}}
