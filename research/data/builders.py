"""This repo's TFDS builders: importing this module registers them with TFDS
(`tfds.builder('mnist_multidigit')`, `tfds.builder('svhn_full')`)."""
from research.data import multidigit  # noqa: F401  pylint: disable=unused-import
from research.data import svhn_full  # noqa: F401  pylint: disable=unused-import
