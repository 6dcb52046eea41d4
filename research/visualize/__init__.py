"""Seeing inside trained networks: feature visualization, DeepDream,
Zeiler-Fergus panels and attribution, for any run the training loop wrote.

  python -m research.visualize demo --workdir=RUN --out=DIR

See research/visualize/__main__.py for the commands.
"""
