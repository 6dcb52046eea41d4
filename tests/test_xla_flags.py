"""research/xla_flags.py: the CPU settings join XLA_FLAGS without overriding
what the user set."""
from research import xla_flags


def test_flags_are_appended_to_the_users():
  flags = xla_flags.with_cpu_flags('--xla_force_host_platform_device_count=8')
  assert flags.split()[0] == '--xla_force_host_platform_device_count=8'
  for name, value in xla_flags.CPU_FLAGS.items():
    assert f'--{name}={value}' in flags.split()


def test_a_flag_the_user_set_is_kept():
  name = 'xla_cpu_experimental_ynn_fusion_type'
  mine = f'--{name}=+LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
  flags = xla_flags.with_cpu_flags(mine)
  assert [f for f in flags.split() if name in f] == [mine]
  assert xla_flags.with_cpu_flags(flags) == flags  # applying twice adds nothing


def test_importing_research_set_them_in_this_process():
  import os
  assert xla_flags.with_cpu_flags(os.environ['XLA_FLAGS']) == os.environ['XLA_FLAGS']
