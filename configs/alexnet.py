r"""AlexNet on ImageNet: Krizhevsky, Sutskever, Hinton 2012, sections 4 and 5.

  python -m research.main --config=configs/alexnet.py --workdir=runs/alexnet \
      --config.data.manual_dir=DIR   # ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar

Data (section 4.1): images rescaled to a shorter side of 256 and centre-cropped
to 256x256; training takes random 227x227 patches (227 gives the paper's 55x55
conv1 maps), their horizontal reflections and PCA colour noise (4.1, alpha ~
N(0, 0.1)); the test averages the softmax over 10 patches (corners, centre
and their reflections): 'validation_10crop', at the end of training, while
'validation' scores the centre patch every epoch for the learning-rate rule.
Training (section 5): SGD, batch 128, momentum 0.9, weight decay 5e-4; learning
rate 0.01, divided by 10 when the validation error stops improving, three times
before training ends; about 90 epochs.

Arguments (FILE:ARG):
  'mnist'  the same network and recipe on MNIST digits upscaled to 67x67 RGB on
           the device (offline, from --config.data.manual_dir=../shared/data/mnist):
           proof that the model learns, on data available here. 67 is the
           smallest input the five convolutions and three pools accept. One
           change: He fan-in weights and zero biases, with inputs on [0, 1]
           minus the mean. At this size the paper's N(0, 0.01) weights pass
           almost no signal (fc6 sees 256 inputs, not 9,216): logits varied
           by 0.1% across images at init and the loss sat at chance for 100
           steps; with He weights test accuracy was 96% after 150 steps.
  'prepared' the same training from the prepared store of 256x256 squares
           (research/data/prepared.py, built once with python -m
           research.data.prepared --data_dir=DIR --manual_dir=TARS): the
           batches, crops and colour shifts a function of the step for any
           number of hosts, at a fraction of the CPU time per image.
  'test'   a few steps on a slice, small images and batches, for CI:
           'mnist,test' on MNIST, 'test' on ImageNet files in manual_dir (the
           tests write a tiny ILSVRC2012 in the real layout).
"""
from configs import common
from research import configlib

MNIST_SIZE = 67


def get_config(arg=None):
  arg = configlib.parse_arg(arg, mnist=False, prepared=False, test=False)
  c = configlib.base()
  c.model.name = 'alexnet'
  c.model.towers = 2
  c.model.lrn = 'paper'  # 'caffe' for BVLC's weights (set by init_from)

  # Section 2 and 4.1: 227 crops of 256, flips, PCA colour; 10-crop test,
  # ten times the centre crop's cost, at the end only.
  common.streamed_imagenet(c, 227, 'alexnet', eval_crops=1)
  c.evals = {
      'validation': {'type': 'classification', 'split': 'validation',
                     'every_epochs': 1.0},
      'validation_10crop': {'type': 'ten_crop', 'split': 'validation',
                            'every_epochs': 0.0}}
  # Section 2: raw pixel values minus the mean over the training set (these
  # are ImageNet's per-channel means).
  c.data.pixel_scale = 255.0
  c.data.pixel_mean = common.IMAGENET_MEAN_RGB

  common.sgd_momentum(c, learning_rate=0.01, weight_decay=5e-4)  # section 5
  c.optimizer.plateau.factor = 0.1
  c.optimizer.plateau.patience = 5
  c.optimizer.plateau.metric = 'validation/accuracy'
  c.optimizer.plateau.min_scale = 1e-3  # the 4th plateau ends training
  c.num_epochs = 90

  if arg.mnist:
    common.upscaled_mnist(c, MNIST_SIZE)
    c.evals = {}  # config.data.eval_splits: validation and test
  if arg.prepared:
    common.prepared_imagenet(c)
  if arg.test:
    common.shrink_for_test(c, arg.mnist)
  return c


def get_sweeps(arg=None) -> dict:
  """{sweep name: {config key: values}} for launch/sweep.py."""
  del arg
  return {'learning_rate': {'optimizer.learning_rate': [0.003, 0.01, 0.03]},
          'init': {'model.weight_init': ['paper', 'he']}}
