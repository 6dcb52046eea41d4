"""Model registry: `config.model.name` -> flax.linen module class.

The other `config.model` fields are the module's constructor fields, so depth,
width and variants are plain config values a sweep can change.
"""
import dataclasses

import ml_collections

from research import configlib
from research.models.alexnet import AlexNet
from research.models.convnet import ConvNet
from research.models.googlenet import GoogLeNet
from research.models.mlp import MLP
from research.models.neuron import Neuron
from research.models.street_numbers import StreetNumbers

REGISTRY = {'alexnet': AlexNet, 'convnet': ConvNet, 'googlenet': GoogLeNet,
            'mlp': MLP, 'neuron': Neuron, 'street_numbers': StreetNumbers}


def build(model_config: ml_collections.ConfigDict | dict):
  """Instantiates the registered module with the config's fields."""
  name = model_config['name']
  configlib.choose('model', name, REGISTRY)
  cls = REGISTRY[name]
  kwargs = {k: v for k, v in model_config.items() if k != 'name'}
  fields = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name'}
  for key in kwargs:
    if key not in fields:
      configlib.choose(f'field of model {name!r}', key, fields)
  return cls(**kwargs)
