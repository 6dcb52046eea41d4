"""Model shapes, parameter counts (Nielsen's book) and layer conventions."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research import configlib
from research import models
from research.models import layers


def count(model, input_shape):
  params = model.init(jax.random.key(0), jnp.zeros(input_shape))['params']
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize('hidden,expected', [(15, 11_935), (30, 23_860),
                                             (100, 79_510)])
def test_nielsen_parameter_counts(hidden, expected):
  assert count(models.MLP(hidden=(hidden,)), (1, 28, 28, 1)) == expected


def test_mlp_shapes_and_sown_activations():
  model = models.MLP(hidden=(30, 20), num_classes=10)
  x = jnp.ones((4, 28, 28, 1))
  variables = model.init(jax.random.key(0), x)
  logits, state = model.apply(variables, x, mutable=['intermediates'])
  assert logits.shape == (4, 10)
  assert state['intermediates']['hidden0'][0].shape == (4, 30)
  assert state['intermediates']['hidden1'][0].shape == (4, 20)


def test_nielsen_convnet_shapes_and_parameter_count():
  # network3.py with ReLU: 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4.
  model = models.ConvNet()
  x = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), x)
  logits, state = model.apply(variables, x, mutable=['intermediates'])
  assert logits.shape == (2, 10)
  assert state['intermediates']['conv1']['relu'][0].shape == (2, 24, 24, 20)
  assert state['intermediates']['conv2']['pre_relu'][0].shape == (2, 8, 8, 40)
  assert state['intermediates']['fc1']['relu'][0].shape == (2, 100)
  # 5*5*20 + 20, 5*5*20*40 + 40, 640*100 + 100, 100*10 + 10
  assert count(model, (1, 28, 28, 1)) == 520 + 20_040 + 64_100 + 1_010


def test_linear_stores_kernel_out_by_in():
  layer = layers.Linear(3)
  x = jax.random.normal(jax.random.key(1), (5, 7))
  params = layer.init(jax.random.key(0), x)['params']
  assert params['kernel'].shape == (3, 7)
  np.testing.assert_allclose(layer.apply({'params': params}, x),
                             x @ params['kernel'].T + params['bias'], rtol=1e-5)


def test_weight_inits_follow_nielsen():
  """ch.1: weights N(0, 1); ch.3: weights N(0, 1/n_in); biases N(0, 1)."""
  x = jnp.zeros((1, 784))
  std = lambda init: float(jnp.std(models.MLP(hidden=(500,), weight_init=init)
                                   .init(jax.random.key(0), x)
                                   ['params']['dense0']['kernel']))
  print('std', std('standard_normal'), std('scaled_normal') * 784**0.5)
  assert std('standard_normal') == pytest.approx(1.0, rel=0.02)
  assert std('scaled_normal') == pytest.approx(784**-0.5, rel=0.02)


def test_unknown_model_field_suggests_closest():
  config = ml_collections.ConfigDict({'name': 'mlp', 'hiden': (30,)})
  with pytest.raises(configlib.ConfigError, match="Did you mean 'hidden'"):
    models.build(config)


def test_neuron_is_one_unit():
  assert count(models.Neuron(), (1, 3)) == 4
