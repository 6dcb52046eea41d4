"""XLA CPU settings under which the convolutional nets train fastest.

`import research` adds these to the XLA_FLAGS environment variable, which XLA
reads once, when JAX first creates its backends; a flag already in XLA_FLAGS
is left as the user set it. Only the CPU backend reads them: GPU and TPU
programs are unchanged. To run without them, set the same flags to XLA's
defaults in XLA_FLAGS (`--xla_cpu_experimental_ynn_fusion_type=
+LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION
--xla_cpu_enable_concurrency_optimized_scheduler=false`).

Why (research.bench, batch 32, fp32, full training step, 2-core AMD EPYC,
jax 0.10.2; images/s without -> with both flags, one session):
AlexNet 13.2 -> 19.4, GoogLeNet 5.7 -> 8.3, street_numbers 14.5 -> 15.7,
Nielsen's ch.6 convnet at 28x28, batch 10: 1,900-2,100 -> 2,500-3,200.

- YNNPACK, XLA CPU's default for convolutions in jax 0.10, ran many of them
  on one of the two cores (AlexNet's conv2 forward: 118 ms per tower on one
  thread while the other idled; GoogLeNet's conv2: 339 ms). XLA's own
  (Eigen) convolutions use both, and their weight gradients run near matmul
  speed, so research/models/fast_ops.py no longer rewrites those.
- The concurrency-optimized scheduler orders independent ops (AlexNet's
  towers, GoogLeNet's inception branches) so that they run side by side on
  the two cores: GoogLeNet 7.3 -> 8.3 images/s on top of the first flag.
"""
import os

CPU_FLAGS = {
    'xla_cpu_experimental_ynn_fusion_type':
        '-LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION',
    'xla_cpu_enable_concurrency_optimized_scheduler': 'true',
}


def with_cpu_flags(xla_flags: str) -> str:
  """XLA_FLAGS with each of CPU_FLAGS appended unless it is already set."""
  given = {part.lstrip('-').split('=', 1)[0] for part in xla_flags.split()}
  added = [f'--{name}={value}' for name, value in CPU_FLAGS.items()
           if name not in given]
  return ' '.join([xla_flags.strip(), *added]).strip()


def apply(environ=os.environ) -> None:
  environ['XLA_FLAGS'] = with_cpu_flags(environ.get('XLA_FLAGS', ''))
