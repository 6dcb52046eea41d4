"""XLA CPU settings under which the convolutional nets train fastest.

`import research` adds these to the XLA_FLAGS environment variable, which XLA
reads once, when JAX first creates its backends; a flag already in XLA_FLAGS
is left as the user set it. Only the CPU backend reads them: GPU and TPU
programs are unchanged. To run without them, set the flag to XLA's default
in XLA_FLAGS: `--xla_cpu_experimental_ynn_fusion_type=
+LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`.

XLA's own (Eigen) convolutions instead of YNNPACK's, XLA CPU's default for
convolutions in jax 0.10: YNNPACK ran many of them on one of the two cores
(AlexNet's conv2 forward: 118 ms per tower on one thread while the other
idled; GoogLeNet's conv2: 339 ms). Eigen's use both, and their weight
gradients run near matmul speed, so research/models/fast_ops.py no longer
rewrites those. research.bench, batch 32, fp32, full training step, 2-core
AMD EPYC, jax 0.10.2, images/s without -> with: AlexNet 13.2 -> 19.4,
GoogLeNet 5.7 -> 7.0-7.2, street_numbers 14.5 -> 15.7; Nielsen's ch.6 convnet
at 28x28, batch 10: 1,900-2,100 -> 2,500-3,200 (the first two with fast_ops'
pool rewrites of that time, before its current ones).

(XLA's concurrency-optimized scheduler, which could run AlexNet's towers or
GoogLeNet's branches side by side, made no difference beyond this noisy
machine's: with and without it, AlexNet 21.8/20.5 against 21.0/21.6 images/s,
GoogLeNet 8.2/8.8 against 9.4/8.9.)
"""
import os

CPU_FLAGS = {
    'xla_cpu_experimental_ynn_fusion_type':
        '-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION',
}


def with_cpu_flags(xla_flags: str) -> str:
  """XLA_FLAGS with each of CPU_FLAGS appended unless it is already set."""
  given = {part.lstrip('-').split('=', 1)[0] for part in xla_flags.split()}
  added = [f'--{name}={value}' for name, value in CPU_FLAGS.items()
           if name not in given]
  return ' '.join([xla_flags.strip(), *added]).strip()


def apply(environ=os.environ) -> None:
  environ['XLA_FLAGS'] = with_cpu_flags(environ.get('XLA_FLAGS', ''))
