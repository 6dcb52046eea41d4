r"""CPU time per training image of ImageNet input at AlexNet's settings: the
streamed JPEGs against the prepared store, in one run.

  python -m benchmarks.input_pipeline --data_dir=/tmp/bench/tfds \
      --manual_dir=/tmp/bench/manual --write_photos=400

Reads configs/alexnet.py's training input (227x227 random crops of images
resized to 256, reflections, PCA lighting; batch 128) the ways the training
loop can: streamed through research/data/streaming.py (decode and resize every
time), and from the prepared store of 256x256 squares
(research/data/prepared.py, built here from the same images, raw uint8 and
JPEG), chunk by chunk as the loop reads it, timed after a warm-up. With --write_photos=N, a manual_dir without the
ILSVRC tars first gets a synthetic set in their layout (3 synsets x N textured
JPEGs of ImageNet's common sizes; tests/ilsvrc_fixture.py), which TFDS then
prepares; point --manual_dir at the real tars to time real ImageNet. Also
times the decode+augment map alone in CPU time (which other load on the machine
barely changes), as the pipeline does it and two alternatives: decoding only
the central square of each JPEG, and resizing without antialiasing. Prints a
summary, then one JSON line with `cpu_ms_per_image` for every path.
"""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once

import json
import os
import time

from absl import app
from absl import flags
import tensorflow as tf

from configs import alexnet
from research.data import augment
from research.data import prepared
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


def prepared_paths(config, batch: int) -> dict:
  """{path name: (images/s, CPU ms per image, build CPU-free seconds)} of
  the prepared store in each encoding, built beside the source."""
  out = {}
  for name, encoding, quality in (('prepared raw uint8', 'raw', 0),
                                  ('prepared JPEG q95', 'jpeg', 95),
                                  ('prepared JPEG q90', 'jpeg', 90)):
    store_dir = os.path.join(_DATA_DIR.value, f'store_{encoding}{quality}')
    start = time.perf_counter()
    prepared.build(_DATA_DIR.value, _MANUAL_DIR.value, encoding, quality or 95,
                   splits=('train',), out_data_dir=store_dir)
    built = time.perf_counter() - start
    c = alexnet.get_config('prepared')
    c.data.data_dir = store_dir
    data = prepared.PreparedTrainBatches(c.data, batch, c.seed)
    out[name] = (*pipeline_rate(data, _STEPS.value, _WARMUP.value), built)
  return out


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
  stores = prepared_paths(config, batch)
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
  cores = len(os.sched_getaffinity(0))
  for name, (r, ms, built) in stores.items():
    print(f'{name}: {r:8.1f} images/s, {ms:.2f} CPU ms per image '
          f'({cpu_ms / ms:.1f}x less than streamed; {cores} cores feed '
          f'{cores * 1e3 / ms:,.0f} images/s); built in {built:.0f} s')
  paths = {'streamed': {'images_per_s': rate, 'cpu_ms_per_image': cpu_ms}}
  paths.update({name: {'images_per_s': r, 'cpu_ms_per_image': ms,
                       'build_s': built} for name, (r, ms, built) in
                stores.items()})
  print(json.dumps({'paths': paths,
                    'cpu_ms_per_image': {k: v['cpu_ms_per_image']
                                         for k, v in paths.items()},
                    'images_per_s_of_cores': {
                        k: cores * 1e3 / v['cpu_ms_per_image']
                        for k, v in paths.items()},
                    'map_cpu_ms': costs, 'batch_size': batch,
                    'cpu_cores': cores, 'num_examples': data.num_examples}))

if __name__ == '__main__':
  app.run(main)
