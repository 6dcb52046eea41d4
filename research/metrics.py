"""Counts for accuracy metrics, summed over a masked batch so evals can pad."""
import jax.numpy as jnp


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


def finalize(split: str, sums: dict) -> dict:
  """Turns summed counts into means named '<split>/<metric>'."""
  count = float(sums['count'])
  return {f'{split}/{k}': float(v) / count for k, v in sums.items() if k != 'count'}
