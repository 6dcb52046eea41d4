"""Local response normalisation (Krizhevsky et al. 2012, section 3.3).

b = a / (k + alpha * sum of a^2 over n neighbouring channels)^beta, with the
paper's k=2, n=5, alpha=1e-4, beta=0.75. alpha is not divided by n (PyTorch's
LocalResponseNorm divides; TF's local_response_normalization does not).

In bfloat16 models the sum of squares and the power run in float32 (a sum of
five squares of activations in the hundreds would keep 3 significant digits);
the result has x's dtype.
"""
import jax
import jax.numpy as jnp

# The two parametrisations in use: the paper's (section 3.3), and Caffe's
# LRN layer with its defaults, x / (1 + alpha / n * sum x^2)^beta, which
# BVLC's bvlc_alexnet and bvlc_googlenet were trained with.
PAPER = {'k': 2.0, 'n': 5, 'alpha': 1e-4, 'beta': 0.75}
CAFFE = {'k': 1.0, 'n': 5, 'alpha': 1e-4 / 5, 'beta': 0.75}
KINDS = {'paper': PAPER, 'caffe': CAFFE}


def local_response_norm(x, k: float = 2.0, n: int = 5, alpha: float = 1e-4,
                        beta: float = 0.75):
  """x: (..., channels), normalised across the last axis."""
  half = n // 2
  window = (1,) * (x.ndim - 1) + (n,)
  pad = [(0, 0)] * (x.ndim - 1) + [(half, half)]
  a = x.astype(jnp.float32)
  sums = jax.lax.reduce_window(a * a, 0.0, jax.lax.add, window,
                               (1,) * x.ndim, pad)
  d = k + alpha * sums
  if beta == 0.75:  # d^-3/4 = rsqrt(d) sqrt(rsqrt(d)): no log and exp on CPU
    r = jax.lax.rsqrt(d)
    return (a * r * jnp.sqrt(r)).astype(x.dtype)
  return (a / jnp.power(d, beta)).astype(x.dtype)
