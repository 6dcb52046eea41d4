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


def test_the_commands_set_them_and_the_library_does_not():
  """`import research...` leaves the environment alone; the entry points
  (research.main, research.bench, research.visualize) set the flags."""
  import os
  import subprocess
  import sys
  from tests.helpers import REPO
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  read = lambda module: subprocess.run(
      [sys.executable, '-c', f'import {module}, os; '
       'print(os.environ.get("XLA_FLAGS", ""))'],
      cwd=REPO, env=env, capture_output=True, text=True,
      check=True).stdout.strip()
  assert read('research.train') == ''
  for command in ('research.main', 'research.bench',
                  'research.visualize.__main__'):
    assert read(command) == xla_flags.with_cpu_flags(''), command


def test_a_child_with_simulated_devices_keeps_the_callers_cpu_flags():
  flags = xla_flags.with_host_devices(
      '--xla_cpu_max_isa=AVX --xla_force_host_platform_device_count=8', 2)
  assert flags.split() == ['--xla_cpu_max_isa=AVX',
                           '--xla_force_host_platform_device_count=2']
  assert xla_flags.with_host_devices('', 1) == (
      '--xla_force_host_platform_device_count=1')
