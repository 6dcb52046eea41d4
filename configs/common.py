"""Blocks several experiment configs share, each a function that sets one
group of keys on a config from research/configlib.py's base()."""

IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)
MNIST_MEAN = 0.1307  # mean pixel of MNIST's training images, on [0, 1]


def nielsen_mnist(c, test: bool = False):
  """Nielsen's MNIST and loop (ch.1, network.py): the file's first 50,000
  training images train, the next 10,000 validate; mini-batch 10; 1,000 steps
  a compiled call. `test`: a seconds-long slice."""
  c.data.name = 'mnist'
  c.data.restore_file_order = True   # Nielsen's split is by position in the file
  c.data.train_split = 'train[:50000]'
  c.data.eval_splits = {'validation': 'train[50000:]', 'test': 'test'}
  c.batch_size = 10
  c.eval_batch_size = 1000
  c.num_epochs = 30
  c.log_every_steps = 1000
  c.steps_per_call = 1000
  if test:
    c.data.train_split = 'train[:2000]'
    c.data.eval_splits = {'validation': 'train[50000:51000]',
                          'test': 'test[:1000]'}
    c.num_epochs = 2
    c.log_every_steps = 100


def streamed_imagenet(c, image_size: int, augment: str, eval_crops: int):
  """ILSVRC-2012 through TFDS's imagenet2012 builder, streamed: images
  rescaled to a shorter side of 256, random image_size crops (`augment`),
  validation on the centre crop or 10 crops."""
  c.model.num_classes = 1000
  c.data.name = 'imagenet2012'
  c.data.streaming = True
  c.data.image_size = image_size
  c.data.resize_to = 256
  c.data.augment = augment
  c.data.eval_crops = eval_crops
  c.data.train_split = 'train'
  c.data.eval_splits = {'validation': 'validation'}  # test labels are private
  c.batch_size = 128
  c.eval_batch_size = 200
  c.log_every_steps = 100
  c.steps_per_call = 1  # XLA's CPU convolutions are slow inside a scan


def sgd_momentum(c, learning_rate: float, weight_decay: float):
  """The ImageNet papers' training: SGD with momentum 0.9 and weight decay on
  the softmax cross-entropy."""
  c.loss = 'softmax_cross_entropy'
  c.optimizer.name = 'momentum'
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = learning_rate
  c.optimizer.weight_decay = weight_decay


def upscaled_mnist(c, image_size: int):
  """MNIST digits resized to image_size and repeated to RGB on the device, with
  Nielsen's split (first 50,000 training images; the other 10,000 validate),
  2 epochs evaluated every quarter. He initialisation: with the papers' small
  initial weights an ImageNet net's logits barely vary across these small
  inputs at first, and training sat at chance."""
  c.model.num_classes = 10
  c.model.weight_init = 'he'
  c.num_epochs = 2
  c.eval_every_epochs = 0.25
  c.checkpoint_every_epochs = 0.25
  c.eval_batch_size = 500
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


def prepared_imagenet(c):
  """Read the training and validation images from the prepared store
  (research/data/prepared.py, built once) instead of streaming the JPEGs."""
  c.data.streaming = False
  c.data.prepared = True
