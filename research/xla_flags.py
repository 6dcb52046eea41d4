"""XLA CPU settings under which the convolutional nets train fastest.

`apply()` adds these to the XLA_FLAGS environment variable, which XLA reads
once, when JAX first creates its backends; a flag already in XLA_FLAGS is
left as the user set it. Only the CPU backend reads them: GPU and TPU
programs are unchanged. To run without them, set the flag to XLA's default
in XLA_FLAGS: `--xla_cpu_experimental_ynn_fusion_type=
+LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`.

XLA's own (Eigen) convolutions instead of YNNPACK's, XLA CPU's default for
convolutions in jax 0.10: YNNPACK ran many of them on one core of two while
the other idled, and Eigen's use both, with weight gradients near matmul
speed. The entry points (research.main, research.bench, research.visualize
and the benchmarks) apply them before JAX starts; importing the library does
not touch the environment. What they bought, and the concurrency-optimized
scheduler that did not help: results/README.md (2026-11-23).
"""
import os

from research import host_memory

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


def with_host_devices(xla_flags: str, count: int) -> str:
  """XLA_FLAGS simulating `count` CPU devices, the caller's other flags kept
  (e.g. --xla_cpu_max_isa): a child process must run the same CPU code."""
  kept = [part for part in xla_flags.split() if not part.lstrip('-')
          .startswith('xla_force_host_platform_device_count')]
  return ' '.join([*kept, f'--xla_force_host_platform_device_count={count}'])


def apply(environ=os.environ) -> None:
  """CPU_FLAGS into XLA_FLAGS, and malloc set to keep XLA's freed buffers
  (`host_memory.keep_freed_memory`)."""
  environ['XLA_FLAGS'] = with_cpu_flags(environ.get('XLA_FLAGS', ''))
  host_memory.keep_freed_memory(environ)
