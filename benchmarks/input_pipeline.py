r"""Images per second of the streamed ImageNet training input at AlexNet's settings.

  python -m benchmarks.input_pipeline --data_dir=/tmp/bench/tfds \
      --manual_dir=/tmp/bench/manual --write_photos=400

Streams configs/alexnet.py's training input (227x227 random crops of images
resized to 256, reflections, PCA lighting; batch 128) through
research/data/streaming.py as the training loop reads it, chunk by chunk, and
times it after a warm-up. With --write_photos=N, a manual_dir without the
ILSVRC tars first gets a synthetic set in their layout (3 synsets x N textured
JPEGs of ImageNet's common sizes; tests/ilsvrc_fixture.py), which TFDS then
prepares; point --manual_dir at the real tars to time real ImageNet. Also
times the decode+augment map alone in CPU time (which other load on the machine
barely changes), as the pipeline does it and two alternatives: decoding only
the central square of each JPEG, and resizing without antialiasing. Prints a
summary, then JSON.
"""
import json
import os
import time

from absl import app
from absl import flags
import tensorflow as tf

from configs import alexnet
from research.data import augment
from research.data import streaming
from tests import ilsvrc_fixture

_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir.',
                                required=True)
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'The ILSVRC tars.',
                                  required=True)
_WRITE_PHOTOS = flags.DEFINE_integer(
    'write_photos', 0, 'If the tars are missing, write a synthetic set with '
    'this many images per synset (0: never).')
_STEPS = flags.DEFINE_integer('steps', 30, 'Timed training steps.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps first.')
_BATCH = flags.DEFINE_integer('batch_size', None, 'Default: the config\'s.')


def pipeline_rate(data, steps: int, warmup: int) -> tuple:
  """(images/s, CPU ms per image) of `steps` sequential one-step chunks.

  CPU time per image does not depend on other load on the machine, so it
  sizes a host: cores needed = target images/s * ms / 1000.
  """
  data.chunk(0, warmup)  # fills the shuffle buffer and the prefetch queue
  start, cpu = time.perf_counter(), time.process_time()
  for step in range(warmup, warmup + steps):
    data.chunk(step, 1)
  images = steps * data.local_batch
  return (images / (time.perf_counter() - start),
          (time.process_time() - cpu) / images * 1e3)


def _crop_decode(encoded):
  """The central square decoded alone (tf.image.decode_and_crop_jpeg)."""
  shape = tf.image.extract_jpeg_shape(encoded)
  side = tf.minimum(shape[0], shape[1])
  window = tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side,
                     side])
  return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)


# Decode and resize: the pipeline's, and two alternatives it was measured
# against. Each is followed by the same crop, flip and PCA lighting.
VARIANTS = {
    'pipeline (whole decode, antialiased)': lambda e, r: (
        augment.resize_and_center_crop(augment.decode(e), r)),
    'central-square decode': lambda e, r: augment.resize_square(
        _crop_decode(e), r),
    'no antialiasing': lambda e, r: tf.image.resize(
        tf.cast(augment.center_square(augment.decode(e)), tf.float32),
        (r, r)),
}


def map_cost(data, variant, n: int) -> float:
  """CPU ms per image of decode+augment over n records, run as the
  pipeline's parallel map."""
  size, resize_to = data.image_size, data.resize_to
  def fn(ex):
    image = variant(ex['image'], resize_to)
    return augment.crop_and_augment(image, ex['seed'], size, 'alexnet')
  records = data.records(tf.constant(0, tf.int64)).repeat().take(n)
  ds = records.map(tf.autograph.experimental.do_not_convert(fn),
                   num_parallel_calls=tf.data.AUTOTUNE)
  ds.take(64).reduce(0, lambda acc, _: acc)  # warm-up
  cpu = time.process_time()
  ds.reduce(0, lambda acc, _: acc)
  return (time.process_time() - cpu) / n * 1e3


def main(_):
  config = alexnet.get_config()
  config.data.data_dir = _DATA_DIR.value
  config.data.manual_dir = _MANUAL_DIR.value
  tar = os.path.join(_MANUAL_DIR.value, 'ILSVRC2012_img_train.tar')
  if _WRITE_PHOTOS.value and not os.path.exists(tar):
    ilsvrc_fixture.write_photos(_MANUAL_DIR.value, _WRITE_PHOTOS.value)
  batch = _BATCH.value or config.batch_size
  data = streaming.StreamedTrainBatches(config.data, batch, config.seed)
  rate, cpu_ms = pipeline_rate(data, _STEPS.value, _WARMUP.value)
  # Interleaved rounds, best of each: a busy machine inflates CPU time too.
  rounds = [{name: map_cost(data, fn, 10 * batch)
             for name, fn in VARIANTS.items()} for _ in range(3)]
  costs = {name: min(r[name] for r in rounds) for name in VARIANTS}
  print(f'{data.num_examples} training images, batch {batch}, '
        f'{data.image_size}x{data.image_size} of {data.resize_to}, '
        f'augment={data.augment}, {os.cpu_count()} CPU cores')
  print(f'streamed training batches: {rate:8.1f} images/s, '
        f'{cpu_ms:.2f} CPU ms per image')
  for name, ms in costs.items():
    print(f'decode+augment alone, {name}: {ms:.2f} CPU ms per image')
  print(json.dumps({'images_per_s': rate, 'cpu_ms_per_image': cpu_ms,
                    'map_cpu_ms': costs, 'batch_size': batch,
                    'cpu_cores': os.cpu_count(),
                    'num_examples': data.num_examples}))

if __name__ == '__main__':
  app.run(main)
