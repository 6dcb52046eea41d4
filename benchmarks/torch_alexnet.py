"""AlexNet's speed reference: the same layers in PyTorch on the CPU, batch 32,
fp32, one full training step (forward, backward, SGD with momentum and weight
decay), so this codebase's research.bench can be held against PyTorch on the
same machine (results/README.md has both).

  pip install torch==2.13.0   # not in requirements.txt: only this script uses it
  python -m benchmarks.torch_alexnet [--steps=5] [--rounds=2]

Layers as research/models/alexnet.py (Krizhevsky et al. 2012, section 3): the
towers as groups=2 convolutions, LRN with alpha 1e-4 not divided by n (torch
divides, hence 5e-4), 60,965,224 parameters. Prints images/s per round.
"""
import argparse
import time


def alexnet(nn):
  lrn = lambda: nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)
  return nn.Sequential(
      nn.Conv2d(3, 96, 11, 4), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
      nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), lrn(),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(),
      nn.MaxPool2d(3, 2), nn.Flatten(),
      nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
      nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
      nn.Linear(4096, 1000))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--rounds', type=int, default=2)
  args = parser.parse_args()
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise SystemExit('PyTorch is not installed: pip install torch==2.13.0') from e
  torch.manual_seed(0)
  net = alexnet(torch.nn)
  print(f'params {sum(p.numel() for p in net.parameters()):,}, '
        f'torch {torch.__version__}, {torch.get_num_threads()} threads')
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                        weight_decay=5e-4)
  images = torch.randn(args.batch, 3, 227, 227)
  labels = torch.randint(0, 1000, (args.batch,))

  def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(images), labels).backward()
    opt.step()

  step()  # warm-up
  for _ in range(args.rounds):
    start = time.perf_counter()
    for _ in range(args.steps):
      step()
    seconds = time.perf_counter() - start
    print(f'images/s {args.batch * args.steps / seconds:.1f}')


if __name__ == '__main__':
  main()
