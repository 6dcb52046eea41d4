"""MNIST's idx files (LeCun's format), read with numpy alone, so the numpy
baseline (benchmarks/numpy_network.py) loads them without TensorFlow."""
import gzip

import numpy as np


def read_idx(path: str) -> np.ndarray:
  """An MNIST idx file (gzipped) as a numpy array."""
  with gzip.open(path, 'rb') as f:
    data = f.read()
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
