"""How computers learned to see, in running JAX code."""
