r"""AlexNet on ImageNet: Krizhevsky, Sutskever, Hinton 2012, sections 4 and 5.

  python -m research.main --config=configs/alexnet.py --workdir=runs/alexnet \
      --config.data.manual_dir=DIR   # ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar

Data (section 4.1): images rescaled to a shorter side of 256 and centre-cropped
to 256x256; training takes random 227x227 patches (227 gives the paper's 55x55
conv1 maps), their horizontal reflections and PCA colour noise (4.1, alpha ~
N(0, 0.1)); validation averages the softmax over 10 patches (corners, centre
and their reflections).
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
  'test'   a few steps on a slice, small images and batches, for CI:
           'mnist,test' on MNIST, 'test' on ImageNet files in manual_dir (the
           tests write a tiny ILSVRC2012 in the real layout).
"""
from research import configlib

MNIST_SIZE = 67
IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)
MNIST_MEAN = 0.1307  # mean pixel of MNIST's training images, on [0, 1]


def use_upscaled_mnist(c, image_size: int):
  """MNIST digits resized to image_size and repeated to RGB on the device, with
  Nielsen's split (first 50,000 training images; the other 10,000 validate)."""
  c.model.num_classes = 10
  c.data.name = 'mnist'
  c.data.streaming = False
  c.data.augment = 'none'
  c.data.eval_crops = 1
  c.data.image_size = image_size
  c.data.channels = 3
  c.data.pixel_scale = 1.0
  c.data.pixel_mean = (MNIST_MEAN,) * 3
  c.data.restore_file_order = True
  c.data.train_split = 'train[:50000]'
  c.data.eval_splits = {'validation': 'train[50000:]', 'test': 'test'}


def shrink_for_test(c, mnist: bool):
  """Seconds-long: small batches, and slices of MNIST or small ImageNet crops
  (the tests' tiny ILSVRC fixture has 12 training images)."""
  if mnist:
    c.data.train_split = 'train[:256]'
    c.data.eval_splits = {'validation': 'train[50000:50064]',
                          'test': 'test[:64]'}
    c.batch_size = c.eval_batch_size = 32
    c.log_every_steps = 4
  else:
    c.data.image_size = 67  # the smallest AlexNet takes
    c.data.resize_to = 80
    c.data.shuffle_buffer = 16
    c.batch_size = c.eval_batch_size = 4
    c.log_every_steps = 1
  c.num_epochs = 2
  c.eval_every_epochs = 1
  c.checkpoint_every_epochs = 1


def get_config(arg=None):
  arg = configlib.parse_arg(arg, mnist=False, test=False)
  c = configlib.base()
  c.model.name = 'alexnet'
  c.model.num_classes = 1000
  c.model.towers = 2

  c.data.name = 'imagenet2012'
  c.data.streaming = True
  c.data.image_size = 227
  c.data.resize_to = 256
  c.data.augment = 'alexnet'
  c.data.eval_crops = 10
  c.data.train_split = 'train'
  c.data.eval_splits = {'validation': 'validation'}  # test labels are private
  # Section 2: raw pixel values minus the mean over the training set (these
  # are ImageNet's per-channel means).
  c.data.pixel_scale = 255.0
  c.data.pixel_mean = IMAGENET_MEAN_RGB

  c.loss = 'softmax_cross_entropy'
  c.optimizer.name = 'momentum'
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.learning_rate = 0.01
  c.optimizer.plateau.factor = 0.1
  c.optimizer.plateau.patience = 5
  c.optimizer.plateau.metric = 'validation/accuracy'
  c.optimizer.plateau.min_scale = 1e-3  # the 4th plateau ends training
  c.batch_size = 128
  c.eval_batch_size = 200
  c.num_epochs = 90
  c.log_every_steps = 100
  c.steps_per_call = 1  # XLA's CPU convolutions are slow inside a scan

  if arg.mnist:
    use_upscaled_mnist(c, MNIST_SIZE)
    c.model.weight_init = 'he'
    c.num_epochs = 2
    c.eval_every_epochs = 0.25
    c.checkpoint_every_epochs = 0.25
    c.eval_batch_size = 500
  if arg.test:
    shrink_for_test(c, arg.mnist)
  return c


def get_sweeps(arg=None) -> dict:
  """{sweep name: {config key: values}} for launch/sweep.py."""
  del arg
  return {'learning_rate': {'optimizer.learning_rate': [0.003, 0.01, 0.03]},
          'init': {'model.weight_init': ['paper', 'he']}}
