"""Counts for accuracy metrics, summed over a masked batch so evals can pad.

`counts` sums; `finalize` turns a split's summed counts into its metrics.
"""
import jax
import jax.numpy as jnp
import numpy as np

# Coverage is read off a histogram of confidence, so it sums over batches and
# hosts like every other count: bins of -ln(1 - P(S|X)) in [0, 40) nats.
CONFIDENCE_BINS = 2000
CONFIDENCE_MAX = 40.0
COVERAGE_ACCURACY = 0.98  # Goodfellow et al. 2013 report coverage at 98%


def classification_counts(logits, labels, mask, per_example_loss):
  """Sums of loss, top-1 and (with more than 5 classes) top-5 hits over mask."""
  mask = mask.astype(jnp.float32)
  counts = {'count': jnp.sum(mask),
            'loss': jnp.sum(per_example_loss * mask)}
  if logits.shape[-1] == 1:  # one sigmoid unit: predict 1 where z > 0
    hit = (logits[:, 0] > 0).astype(labels.dtype) == labels
    counts['accuracy'] = jnp.sum(hit * mask)
    return counts
  counts['accuracy'] = jnp.sum((jnp.argmax(logits, -1) == labels) * mask)
  if logits.shape[-1] > 5:
    # Top-5 hit: fewer than 5 classes score strictly above the true one.
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    rank = jnp.sum(logits > true_logit, axis=-1)
    counts['top5_accuracy'] = jnp.sum((rank < 5) * mask)
  return counts


def decode(logits):
  """The most probable number (Goodfellow et al. 2013, section 3).

  P(S | X) factorises, so for each length n the best digits are each head's
  argmax, and n maximises ln P(L = n) + sum_{i <= n} max_j ln P(S_i = j); the
  last length class ("more than max_digits") uses every head. Returns
  (length class, digits (B, max_digits), ln P of the decoded number).
  """
  log_length = jax.nn.log_softmax(logits['length'])
  log_digits = jax.nn.log_softmax(logits['digits'])
  best = jnp.max(log_digits, -1)
  prefix = jnp.cumsum(best, -1)
  by_length = jnp.concatenate([jnp.zeros_like(best[:, :1]), prefix,
                               prefix[:, -1:]], -1)
  score = log_length + by_length[:, :log_length.shape[-1]]
  return (jnp.argmax(score, -1), jnp.argmax(log_digits, -1),
          jnp.max(score, -1))


def sequence_counts(logits, labels, mask, per_example_loss):
  """Sums for sequence accuracy (length and every present digit right),
  length accuracy, per-digit accuracy over the present digits, and the
  confidence histograms that coverage is read from."""
  mask = mask.astype(jnp.float32)
  length, digits, log_p = decode(logits)
  true_length, true_digits = labels[:, 0], labels[:, 1:]
  present = true_digits >= 0
  digit_hit = digits == true_digits
  right = (length == true_length) & jnp.all(digit_hit | ~present, -1)
  # Confidence -ln(1 - p): expm1 keeps it finite and ordered for p near 1.
  confidence = -jnp.log(-jnp.expm1(jnp.minimum(log_p, -1e-30)))
  bins = jnp.clip((confidence / CONFIDENCE_MAX * CONFIDENCE_BINS).astype(
      jnp.int32), 0, CONFIDENCE_BINS - 1)
  histogram = lambda w: jnp.zeros(CONFIDENCE_BINS).at[bins].add(w)
  present = present * mask[:, None]
  return {'count': jnp.sum(mask),
          'loss': jnp.sum(per_example_loss * mask),
          'sequence_accuracy': jnp.sum(right * mask),
          'length_accuracy': jnp.sum((length == true_length) * mask),
          'digit_hits': jnp.sum(digit_hit * present),
          'digit_count': jnp.sum(present),
          'confidence_total': histogram(mask),
          'confidence_right': histogram(right * mask)}


def coverage(total: np.ndarray, right: np.ndarray,
             accuracy: float = COVERAGE_ACCURACY) -> float:
  """The largest share of examples that, taken most confident first, are
  answered with at least `accuracy` (the rest rejected); resolution: one
  histogram bin."""
  kept, hits = np.cumsum(total[::-1]), np.cumsum(right[::-1])
  ok = hits >= accuracy * kept - 1e-6
  return float(kept[ok].max() / total.sum()) if ok.any() else 0.0


def finalize(split: str, sums: dict) -> dict:
  """Turns summed counts into means named '<split>/<metric>'."""
  sums = {k: np.asarray(v) for k, v in sums.items()}
  count = float(sums.pop('count'))
  out = {}
  if 'digit_count' in sums:
    out['digit_accuracy'] = float(sums.pop('digit_hits')) / max(
        float(sums.pop('digit_count')), 1.0)
  if 'confidence_total' in sums:
    out[f'coverage_at_{round(100 * COVERAGE_ACCURACY)}'] = coverage(
        sums.pop('confidence_total'), sums.pop('confidence_right'))
  out.update({k: float(v) / count for k, v in sums.items()})
  return {f'{split}/{k}': v for k, v in out.items()}
