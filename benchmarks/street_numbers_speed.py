r"""The depth sweep's street-number nets against the same nets in PyTorch, on
one CPU core, alternated in one process.

  pip install torch==2.13.0+cpu   # not in requirements.txt: benchmarks only
  python -m benchmarks.street_numbers_speed [--depths=3,7,11] [--width=0.125]
      [--norm=batch] [--batch=32] [--steps=20] [--rounds=3] [--core=0]

Each side runs full training steps (forward, backward, Adam as the sweep's
config has it) at batch 32 on random 54x54x3 images and valid number labels,
for the net `configs/street_numbers.py:mnist,batchnorm` builds at that depth
(this codebase's step: the training loop's own compiled chunk, input
preparation included). PyTorch gets the same layers, unit for unit (read off
the Flax params, so the parameter counts are equal and checked): 5x5
convolutions, BatchNorm, maxout in the first layer, ReLU, SAME 2x2 max pools
with strides alternating 2 and 1, the locally connected 9th layer of the
11-layer net (unfold and a per-position matmul), dense layers and the seven
heads as one matrix; its input is already float. The process pins itself to
`--core` before JAX or PyTorch start threads; PyTorch gets one thread. The
malloc setting of the entry points (research/host_memory.py) holds for the
whole process, PyTorch's side too. Prints each round's images/s for both
and, per depth, the median ratio (this codebase / PyTorch); the last line is
JSON.
"""
from research import xla_flags

xla_flags.apply()  # before JAX creates its backends, which read XLA_FLAGS once

import json
import os
import statistics
import time

import jax
import numpy as np
from absl import app
from absl import flags

from configs import street_numbers as config_file
from research import losses
from research import mesh as mesh_lib
from research import models
from research import optim
from research import steps
from research.data import prepare as prepare_lib
from research.models import street_numbers

CONFIG_ARG = 'mnist,batchnorm'  # the depth sweep's config

_DEPTHS = flags.DEFINE_list('depths', ['3', '7', '11'], 'Hidden layers.')
_WIDTH = flags.DEFINE_float('width', 0.125, 'config.model.width.')
_NORM = flags.DEFINE_enum('norm', 'batch', ['none', 'batch'],
                          'config.model.norm.')
_BATCH = flags.DEFINE_integer('batch', 32, 'Batch size.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per round and side.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternations per depth.')
_CORE = flags.DEFINE_integer('core', 0, 'The CPU core both sides run on.')

SIZE = 54


def jax_step(depth: int):
  """(params count, step()) for this codebase's net and training step."""

  config = config_file.get_config(CONFIG_ARG)
  config.model.hidden_layers = depth
  config.model.width = _WIDTH.value
  config.model.norm = _NORM.value
  model = models.build(config.model)
  prepare = prepare_lib.from_config(config.data)
  tx, _ = optim.create(config.optimizer, 1000, 10_000)
  mesh = mesh_lib.make_mesh(1)
  images, labels = random_batch(np.random.default_rng(0))
  batches = mesh_lib.to_global({'image': images[None], 'label': labels[None]},
                               mesh_lib.stacked_batches(mesh))
  state = steps.create_train_state(model, tx, jax.random.key(0),
                                   np.asarray(prepare(images[:1])), mesh)
  chunk = steps.make_train_chunk(model, losses.get(config.loss), 0.0,
                                 prepare).lower(state, batches,
                                                jax.random.key(1)).compile()
  holder = [state]

  def step():
    holder[0], step_losses = chunk(holder[0], batches, jax.random.key(1))
    return step_losses

  def run(steps):
    for _ in range(steps):
      out = step()
    jax.block_until_ready(out)

  return model, state.params, run


def random_batch(rng):
  """uint8 images and label rows [length class, 5 digits (-1 absent)]."""
  images = rng.integers(0, 256, (_BATCH.value, SIZE, SIZE, 3), dtype='uint8')
  length = rng.integers(1, 6, (_BATCH.value, 1))
  digits = rng.integers(0, 10, (_BATCH.value, 5))
  digits[np.arange(5) >= length] = -1
  return images, np.concatenate([length, digits], -1).astype('int32')


def torch_net(torch, model, params):
  """The Flax `model`'s layers in PyTorch, unit counts read off `params`."""
  nn, F = torch.nn, torch.nn.functional
  bias = model.norm == 'none'

  class Local(nn.Module):
    """A locally connected 5x5 layer: its own weights at every position."""

    def __init__(self, positions, fan_in, units):
      super().__init__()
      self.weight = nn.Parameter(torch.randn(positions, fan_in, units) * 0.05)

    def forward(self, x):
      b, _, h, w = x.shape
      patches = F.unfold(x, 5, padding=2)  # (B, 25 C, H W)
      out = torch.einsum('bkp,pku->bup', patches, self.weight)
      return out.reshape(b, -1, h, w)

  def same_pool(x, stride):
    size = x.shape[-1]
    pad = max((-(-size // stride) - 1) * stride + 2 - size, 0)
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2),
              value=float('-inf'))
    return F.max_pool2d(x, 2, stride)

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.convs, self.norms, self.dense = (nn.ModuleList(), nn.ModuleList(),
                                            nn.ModuleList())
      for i in range(len(model.conv_units())):
        layer = params[f'conv{i + 1}']
        if 'local' in layer:
          h, w, fan_in, out = layer['local']['kernel'].shape
          self.convs.append(Local(h * w, fan_in, out))
        else:
          _, _, cin, out = layer['conv']['kernel'].shape
          self.convs.append(nn.Conv2d(cin, out, 5, padding=2, bias=bias))
        units = out // (model.maxout_pieces if i == 0 else 1)
        self.norms.append(nn.BatchNorm2d(out, momentum=0.1) if not bias
                          else nn.Identity())
      self.units = units
      for i in range(model.num_dense()):
        fan_in, out = params[f'dense{i + 1}']['dense']['kernel'].shape
        self.dense.append(nn.Sequential(
            nn.Linear(fan_in, out, bias=bias),
            nn.BatchNorm1d(out, momentum=0.1) if not bias else nn.Identity(),
            nn.ReLU()))
      self.heads = nn.Linear(out, street_numbers.LENGTH_CLASSES + 5 * 10)

    def forward(self, x):
      for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
        x = norm(conv(x))
        if i == 0:  # maxout over 3 filters per unit (section 5.1)
          b, c, h, w = x.shape
          x = x.view(b, c // model.maxout_pieces, model.maxout_pieces, h,
                     w).amax(2)
        else:
          x = F.relu(x)
        if i < street_numbers.PAPER_CONVS:
          x = same_pool(x, 2 if i % 2 == 0 else 1)
      x = x.flatten(1)
      for layer in self.dense:
        x = layer(x)
      return self.heads(x)

  net = Net()
  counts = [sum(np.size(p) for p in jax.tree.leaves(params)),
            sum(p.numel() for p in net.parameters())]
  if counts[0] != counts[1]:
    raise AssertionError(f'parameters: Flax {counts[0]:,}, PyTorch {counts[1]:,}')
  return net, counts[0]


def torch_step(torch, net, learning_rate: float):
  images, labels = random_batch(np.random.default_rng(0))
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5
  x = x.contiguous()
  labels = torch.from_numpy(labels).long()
  opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
  F = torch.nn.functional
  present = labels[:, 1:] >= 0

  def step():
    opt.zero_grad()
    out = net(x)
    length = F.cross_entropy(out[:, :7], labels[:, 0], reduction='none')
    digits = F.cross_entropy(out[:, 7:].reshape(-1, 10),
                             labels[:, 1:].clamp(min=0).reshape(-1),
                             reduction='none').reshape(-1, 5)
    loss = (length + (digits * present).sum(-1)).mean()
    loss.backward()
    opt.step()

  def run(steps):
    for _ in range(steps):
      step()

  return run


def timed(run, steps: int) -> float:
  start = time.perf_counter()
  run(steps)
  return _BATCH.value * steps / (time.perf_counter() - start)


def main(_):
  # Before JAX and PyTorch size their thread pools.
  os.sched_setaffinity(0, {_CORE.value})
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('PyTorch is not installed: pip install '
                     'torch==2.13.0+cpu (a benchmark-only install).') from e
  torch.set_num_threads(1)
  torch.manual_seed(0)
  learning_rate = config_file.get_config(CONFIG_ARG).optimizer.learning_rate
  out = {'torch': torch.__version__, 'core': _CORE.value, 'depths': {}}
  for depth in map(int, _DEPTHS.value):
    model, params, ours = jax_step(depth)
    net, count = torch_net(torch, model, params)
    theirs = torch_step(torch, net, learning_rate)
    ours(2), theirs(2)  # warm-up
    rounds = []
    for _ in range(_ROUNDS.value):
      rounds.append((timed(ours, _STEPS.value), timed(theirs, _STEPS.value)))
    ratio = statistics.median(a / b for a, b in rounds)
    print(f'depth {depth} ({count:,} params): ' + ', '.join(
        f'{a:.0f} vs {b:.0f}' for a, b in rounds) +
          f' images/s (this codebase vs PyTorch {torch.__version__}); '
          f'median ratio {ratio:.2f}', flush=True)
    out['depths'][depth] = {'params': count, 'rounds': rounds,
                            'median_ratio': ratio}
  print(json.dumps(out))


if __name__ == '__main__':
  app.run(main)
