r"""python -m research.visualize COMMAND (--workdir=RUN | --weights=FILE)
    [--out=DIR] [flags]

Renders pictures of a network into DIR, with DIR/index.html linking each
one. The network is a run of `python -m research.main` (--workdir: its
config.json and newest checkpoint) or BVLC's ImageNet AlexNet or GoogLeNet
(--weights=bvlc_alexnet.caffemodel or bvlc_googlenet.caffemodel, imported by
research/caffe with Caffe's arithmetic and ImageNet's class names).
Commands:

  classify       prints the top-5 classes of each of --images; --save=OUT.npz
                 writes their logits (no --out needed)
  classes        a picture per class from noise (the "banana" experiment);
                 --classes=dumbbell,banana picks them by name or index
  channels       a picture per feature map of --layer
  dream          DeepDream of a photograph (--image, default a real photo),
                 at inception_4c/output where the net has it
  zoom           the iterative zoom dream: numbered frames and zoom.gif
  zeiler_fergus  top-9 patches per feature map of --layer over a dataset
                 split or a folder of --images, occlusion maps, saliency and
                 integrated gradients, first-layer filters, top-5 panels
  demo           all the picture commands; if RUN holds no checkpoint it
                 first trains Nielsen's ch.6 MNIST convnet there
                 (configs/mnist_convnet.py:quick, reading MNIST offline from
                 --manual_dir)

  python -m research.visualize demo --workdir=runs/convnet --out=pictures \
      --manual_dir=../shared/data/mnist
  python -m research.visualize classify --weights=bvlc_googlenet.caffemodel \
      --images=cat.jpg,dog.png
  python -m research.visualize dream --weights=bvlc_googlenet.caffemodel \
      --out=dreams --image=photo.jpg

Small sizes run on a CPU in minutes; on an accelerator --size=1024 dreams
megapixel photos (the gradient is computed on fixed tiles).
"""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once


from absl import app
from absl import flags
from absl import logging

from research import cli
from research import logs
from research.visualize import commands

# classify prints; the others draw pictures; demo draws all of them.
COMMANDS = ('classify', *commands.COMMANDS, 'demo')

flags.DEFINE_string('workdir', None, 'A run written by research.main.')
flags.DEFINE_string('weights', None, 'A BVLC caffemodel: bvlc_alexnet or '
                    'bvlc_googlenet (README: "ImageNet weights").')
flags.DEFINE_string('out', None, 'Where the pictures and index.html go.')
flags.DEFINE_string('images', None, 'Image files (A.jpg,B.png) or a folder: '
                    'what classify classifies and zeiler_fergus searches.')
flags.DEFINE_string('save', None, 'classify: an .npz for the logits.')
flags.DEFINE_list('classes', [], 'classes: class names or indices; default '
                  'every class (ImageNet nets: a few, dumbbell first).')
flags.DEFINE_string('manual_dir', None, 'Original dataset files, for TFDS to '
                    'prepare the run\'s dataset offline (MNIST: '
                    '../shared/data/mnist).')
flags.DEFINE_string('data_dir', None, 'TFDS data_dir; default: the run\'s.')
flags.DEFINE_string('layer', None, 'Layer for channels and zeiler_fergus; '
                    'default: the deepest convolution.')
flags.DEFINE_string('dream_layer', None, 'Layer DeepDream maximises; '
                    'default: two thirds of the way up the convolutions.')
flags.DEFINE_string('split', None, 'Dataset split for zeiler_fergus; default: '
                    'the run\'s test split.')
flags.DEFINE_integer('examples', 2000, 'Images of --split to search.')
flags.DEFINE_integer('panel', 8, 'Images in the occlusion, attribution '
                     'and top-5 panels.')
flags.DEFINE_integer('attribution_steps', 128, 'Integrated gradients\' '
                     'steps along the path.')
flags.DEFINE_integer('steps', 256, 'Optimisation steps per visualization.')
flags.DEFINE_integer('batch', 1, 'Pictures per class/channel (with a '
                     'diversity term when > 1).')
flags.DEFINE_integer('channels', 16, 'Feature maps to render (channels).')
flags.DEFINE_string('image', None, 'Photograph to dream on; default: Grace '
                    'Hopper from matplotlib\'s sample data.')
flags.DEFINE_integer('size', 384, 'Longer side of the dreamed photograph.')
flags.DEFINE_integer('iterations', 10, 'DeepDream steps per octave.')
flags.DEFINE_integer('octaves', 4, 'DeepDream octaves.')
flags.DEFINE_float('octave_scale', 1.4, 'Size ratio between octaves.')
flags.DEFINE_integer('frames', 30, 'Frames of the zoom dream.')
flags.DEFINE_integer('seed', 0, 'PRNG seed: the same seed, the same pictures.')


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'Give one command: {" | ".join(COMMANDS)}.')
  logging.get_absl_handler().addFilter(logs.QuietLibraries())
  options = flags.FLAGS
  try:
    if argv[1] == 'classify':
      print(commands.classify(options))
      return
    if not options.out:
      raise commands.OptionsError(f'{argv[1]} writes pictures: pass '
                                  '--out=DIR.')
    index = commands.run(argv[1], options)
  except commands.USER_ERRORS as e:
    logging.error('%s', e)
    cli.exit_for_user_error(e)
  print(f'Wrote {index}')


if __name__ == '__main__':
  app.run(main)
