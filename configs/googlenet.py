r"""GoogLeNet on ImageNet: Szegedy et al. 2014, sections 5 and 6.

  python -m research.main --config=configs/googlenet.py --workdir=runs/googlenet \
      --config.data.manual_dir=DIR   # ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar

Training (section 6): SGD with momentum 0.9 and a fixed schedule that lowers
the learning rate by 4% every 8 epochs; the auxiliary classifiers' losses weigh
0.3 (section 5). The paper gives neither the base rate, the batch nor the weight
decay: the rate and decay are Caffe's bvlc_googlenet values (0.01, 2e-4), the
batch AlexNet's 128. Data:
random 224x224 crops of images rescaled to 256 and their reflections (the
paper's varied-aspect crops and photometric distortions are not reproduced);
validation on the centre crop, or 10 crops with --config.data.eval_crops=10.

Arguments (FILE:ARG):
  'mnist'  the same network on MNIST digits upscaled to 80x80 RGB on the device
           (offline, --config.data.manual_dir=../shared/data/mnist): proof that
           it learns. 80 is about the smallest input that leaves the auxiliary
           heads' 5x5/3 pool a 5x5 map at 4a.
  'prepared' the same training from the prepared store of 256x256 squares
           (research/data/prepared.py, built once with python -m
           research.data.prepared --data_dir=DIR --manual_dir=TARS): the
           batches, crops and colour shifts a function of the step for any
           number of hosts, at a fraction of the CPU time per image.
  'test'   a few steps on a slice, small images and batches, for CI
           ('mnist,test' on MNIST; see configs/alexnet.py).
"""
from configs import common
from research import configlib

MNIST_SIZE = 80


def get_config(arg=None):
  arg = configlib.parse_arg(arg, mnist=False, prepared=False, test=False)
  c = configlib.base()
  c.model.name = 'googlenet'
  c.model.aux_heads = True
  c.aux_loss_weight = 0.3

  common.streamed_imagenet(c, 224, 'crop_flip', eval_crops=1)

  common.sgd_momentum(c, learning_rate=0.01, weight_decay=2e-4)
  c.optimizer.schedule.name = 'exponential'
  c.optimizer.schedule.decay_rate = 0.96       # -4% ...
  c.optimizer.schedule.decay_every_epochs = 8  # ... every 8 epochs
  c.num_epochs = 250

  if arg.mnist:
    common.upscaled_mnist(c, MNIST_SIZE)
    c.batch_size = 32  # Caffe's bvlc_googlenet batch: 4x the updates per epoch
  if arg.prepared:
    common.prepared_imagenet(c)
  if arg.test:
    common.shrink_for_test(c, arg.mnist)
    if not arg.mnist:  # the aux heads' pool needs a 5x5 map at 4a: >= 80
      c.data.image_size, c.data.resize_to = 96, 112
  return c
