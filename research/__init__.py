"""How computers learned to see, in running JAX code."""
from research import xla_flags

# Before JAX creates its backends, which read XLA_FLAGS once (see xla_flags).
xla_flags.apply()
