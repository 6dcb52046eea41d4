"""Per-example losses of logits and integer labels.

A model returns logits; the loss decides the output units' nonlinearity, as in
Nielsen's book: network.py (ch.1) uses sigmoid outputs and the quadratic cost,
network2.py (ch.3) sigmoid outputs and the cross-entropy cost, and ch.3 also
introduces softmax with log-likelihood. A single output unit (num_classes=1) is a
binary classifier whose label is 0 or 1.
"""
import jax
import jax.numpy as jnp
import optax

from research import configlib


def _targets(logits, labels):
  if logits.shape[-1] == 1:
    return labels[..., None].astype(logits.dtype)
  return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def sigmoid_quadratic(logits, labels):
  """C_x = ||y - sigmoid(z)||^2 / 2 (Nielsen ch.1, eq. 6)."""
  return 0.5 * jnp.sum((jax.nn.sigmoid(logits) - _targets(logits, labels))**2, -1)


def sigmoid_cross_entropy(logits, labels):
  """C_x = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] (Nielsen ch.3, eq. 63)."""
  return jnp.sum(
      optax.sigmoid_binary_cross_entropy(logits, _targets(logits, labels)), -1)


def softmax_cross_entropy(logits, labels):
  """C_x = -ln a_y with a = softmax(z) (Nielsen ch.3, log-likelihood)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def sequence_log_likelihood(logits, labels):
  """-ln P(S | X) = -ln P(L = n | X) - sum_{i <= n} ln P(S_i = s_i | X)
  (Goodfellow et al. 2013, section 3), for logits {'length': (B, 7),
  'digits': (B, 5, 10)} and label rows [length class, digit 1..5]: a digit
  head gets no gradient where its digit is absent (-1)."""
  length = optax.softmax_cross_entropy_with_integer_labels(logits['length'],
                                                           labels[:, 0])
  digits = labels[:, 1:]
  per_digit = optax.softmax_cross_entropy_with_integer_labels(
      logits['digits'], jnp.maximum(digits, 0))
  return length + jnp.sum(jnp.where(digits >= 0, per_digit, 0.0), -1)


REGISTRY = {
    'sigmoid_quadratic': sigmoid_quadratic,
    'sigmoid_cross_entropy': sigmoid_cross_entropy,
    'softmax_cross_entropy': softmax_cross_entropy,
    'sequence_log_likelihood': sequence_log_likelihood,
}


def get(name: str):
  configlib.choose('loss', name, REGISTRY)
  return REGISTRY[name]
