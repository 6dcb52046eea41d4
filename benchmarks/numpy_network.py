"""The baseline the MNIST speed target is measured against: Nielsen's ch.1
algorithm as his network.py runs it, in plain numpy.

Same computation, written here: float64 column vectors, np.dot, sigma'(z)
evaluated from z, the examples of each mini-batch back-propagated one at a time
in Python, gradients summed, then w <- w - eta/m * sum. Timed beside Nielsen's
file it took the same time per epoch; his file is not vendored.

benchmarks/mnist_epoch.py times it in the same run as the JAX epoch but in a
process of its own, with only numpy loaded: beside JAX's and TensorFlow's
threads numpy's epoch is slower than it is for a user of network.py
(results/README.md, 2026-11-30).

  python -m benchmarks.numpy_network --data=FILE.npz [--epochs=1]

times epochs on the 'image' and 'label' arrays of FILE.npz and prints one JSON
line: {"epoch_s": [...]}. With --test=TEST.npz it also scores the network on
those arrays after every epoch, untimed ("test_accuracy": [...]).

  python -m benchmarks.numpy_network --mnist_dir=../shared/data/mnist --epochs=30 [--seed=S]

runs Nielsen's experiment itself from the four MNIST files: the first 50,000
training images, scored on the 10,000 test images. It is the reference the
JAX reproduction's accuracy is compared with (README, Results).
"""
import argparse
import json
import os
import time

import numpy as np

from research.data.idx import read_idx


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _sigmoid_prime(z):
  """sigma'(z), evaluated from z as the book writes it (ch.2, eq. BP1)."""
  return _sigmoid(z) * (1 - _sigmoid(z))


class NumpyNetwork:

  def __init__(self, sizes, rng: np.random.Generator):
    self.weights = [rng.standard_normal((n_out, n_in))
                    for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    self.biases = [rng.standard_normal((n_out, 1)) for n_out in sizes[1:]]

  def gradients(self, x, y):
    """Backpropagation for one example: (dC/db, dC/dw) per layer."""
    activations, zs = [x], []
    for w, b in zip(self.weights, self.biases):
      zs.append(np.dot(w, activations[-1]) + b)
      activations.append(_sigmoid(zs[-1]))
    grad_b, grad_w = [None] * len(zs), [None] * len(zs)
    delta = (activations[-1] - y) * _sigmoid_prime(zs[-1])
    for layer in range(len(zs) - 1, -1, -1):
      grad_b[layer] = delta
      grad_w[layer] = np.dot(delta, activations[layer].T)
      if layer:
        delta = np.dot(self.weights[layer].T, delta) * _sigmoid_prime(zs[layer - 1])
    return grad_b, grad_w

  def update_mini_batch(self, batch, eta):
    """One SGD step on a list of (x, y) examples, back-propagated one by one."""
    sum_b = [np.zeros_like(b) for b in self.biases]
    sum_w = [np.zeros_like(w) for w in self.weights]
    for x, y in batch:
      grad_b, grad_w = self.gradients(x, y)
      sum_b = [s + g for s, g in zip(sum_b, grad_b)]
      sum_w = [s + g for s, g in zip(sum_w, grad_w)]
    self.weights = [w - eta / len(batch) * g for w, g in zip(self.weights, sum_w)]
    self.biases = [b - eta / len(batch) * g for b, g in zip(self.biases, sum_b)]

  def train_epoch(self, examples, batch_size, eta, rng):
    order = rng.permutation(len(examples))
    for start in range(0, len(examples), batch_size):
      self.update_mini_batch([examples[i] for i in order[start:start + batch_size]],
                             eta)

  def accuracy(self, images, labels):
    a = images.T
    for w, b in zip(self.weights, self.biases):
      a = _sigmoid(w @ a + b)
    return float(np.mean(np.argmax(a, axis=0) == labels))


def pixels(images: np.ndarray) -> np.ndarray:
  """uint8 images -> (N, 784) float64 in [0, 1], one row per image."""
  return images.reshape(len(images), -1).astype(np.float64) / 255.0


def examples(images: np.ndarray, labels: np.ndarray):
  """network.py's data format: (784x1 float column, 10x1 one-hot) tuples."""
  eye = np.eye(10)[:, :, None]
  return [(x[:, None], eye[y]) for x, y in zip(pixels(images), labels)]


def nielsen_split(mnist_dir: str) -> tuple[dict, dict]:
  """(train, test) arrays: network.py's 50,000 training images (the file's
  first) and MNIST's 10,000 test images."""
  read = lambda name: read_idx(os.path.join(mnist_dir, f'{name}-ubyte.gz'))
  return ({'image': read('train-images-idx3')[:50_000],
           'label': read('train-labels-idx1')[:50_000]},
          {'image': read('t10k-images-idx3'), 'label': read('t10k-labels-idx1')})


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--data', help=".npz with 'image', 'label'")
  source.add_argument('--mnist_dir', help='the four MNIST .gz files: train on '
                      'the first 50,000 images, score on the test set')
  parser.add_argument('--epochs', type=int, default=1)
  parser.add_argument('--hidden', type=int, nargs='*', default=[30])
  parser.add_argument('--batch_size', type=int, default=10)
  parser.add_argument('--eta', type=float, default=3.0)
  parser.add_argument('--test', help=".npz with 'image', 'label' to score on")
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.mnist_dir and args.test:
    parser.error('--test goes with --data; --mnist_dir scores on MNIST\'s test set.')
  if args.mnist_dir:
    train, test = nielsen_split(args.mnist_dir)
  else:
    train = dict(np.load(args.data))
    test = dict(np.load(args.test)) if args.test else None
  if test:
    test_images = pixels(test['image'])
  train = examples(train['image'], train['label'])
  rng = np.random.default_rng(args.seed)
  net = NumpyNetwork([784, *args.hidden, 10], rng)
  out = {'epoch_s': [], **({'test_accuracy': []} if test else {})}
  for _ in range(args.epochs):
    start = time.perf_counter()
    net.train_epoch(train, args.batch_size, args.eta, rng)
    out['epoch_s'].append(time.perf_counter() - start)
    if test:
      out['test_accuracy'].append(net.accuracy(test_images, test['label']))
  print(json.dumps(out))


if __name__ == '__main__':
  main()
