"""AlexNet's two towers on two devices (Krizhevsky et al. 2012, section 3.2):
with a mesh axis 'model' of size 2 each tower's grouped layers live on their
own device, and training gives the same numbers as on one device.

The cases run in a subprocess with simulated CPU devices (the device count is
fixed when JAX starts): this file is also that subprocess's script.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from research import xla_flags
from tests.helpers import REPO, run_cli

TOWER_LAYERS = ('conv2', 'conv4', 'conv5')


def _tower_kernel_collectives(hlo: str, kernel_shapes) -> list[str]:
  """Cross-device ops (gathers, permutes, reductions) whose result has as many
  elements as one tower's kernel or all of them: tower weights moving between
  devices, in whatever layout XLA picked."""
  sizes = set()
  for shape in kernel_shapes:
    sizes |= {int(np.prod(shape)), int(np.prod(shape[1:]))}
  found = []
  for line in hlo.splitlines():
    op = re.search(r'\s(all-gather|collective-permute|all-reduce|all-to-all|'
                   r'reduce-scatter)(-start)?\(', line)
    if not op or '=' not in line[:op.start()]:
      continue
    result = line[:op.start()].split('=', 1)[1]
    numels = [int(np.prod([int(d) for d in dims.split(',') if d]))
              for dims in re.findall(r'\w+\[([\d,]*)\]', result)]
    if sizes & set(numels):
      found.append(line.strip()[:200])
  return found


def _alexnet_case() -> dict:
  """Two SGD-momentum steps of a small AlexNet through the real
  create_train_state and make_train_chunk, on one device and on a (data 1,
  model 2) mesh."""
  import jax
  import optax
  from research import losses
  from research import mesh as mesh_lib
  from research import models
  from research import steps

  model = models.AlexNet(num_classes=10)  # 67x67 is the smallest input
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 1, 4, 67, 67, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (2, 1, 4)).astype(np.int32)
  tx = optax.sgd(1e-3, momentum=0.9)
  key = jax.random.key(1)

  def two_steps(mesh):
    with jax.set_mesh(mesh):
      state = steps.create_train_state(model, tx, jax.random.key(0),
                                       images[0, 0, :1], mesh)
      chunk = steps.make_train_chunk(model,
                                     losses.get('softmax_cross_entropy'))
      batches = [mesh_lib.to_global({'image': i, 'label': l},
                                    mesh_lib.stacked_batches(mesh))
                 for i, l in zip(images, labels)]
      compiled = chunk.lower(state, batches[0], key).compile()
      initial = jax.device_get(state.params)  # the step donates the state
      step_losses = []
      for batch in batches:
        state, loss = compiled(state, batch, key)
        step_losses.append(float(loss[0]))
    return state, initial, step_losses, compiled.as_text()

  one = jax.make_mesh((1, 1), (mesh_lib.DATA, mesh_lib.MODEL),
                      axis_types=(jax.sharding.AxisType.Auto,) * 2,
                      devices=jax.devices()[:1])
  two = mesh_lib.make_mesh(model=2)
  state1, initial, losses1, _ = two_steps(one)
  state2, _, losses2, hlo = two_steps(two)

  flat = lambda tree: {jax.tree_util.keystr(p): x for p, x in
                       jax.tree_util.tree_flatten_with_path(tree)[0]}
  params1, params2 = flat(state1.params), flat(state2.params)
  mismatched = [name for name, x in params1.items() if not np.allclose(
      np.asarray(params2[name]), np.asarray(x), rtol=1e-4, atol=1e-5)]
  moved = max(float(np.abs(np.asarray(params1[k]) - v).max())
              for k, v in flat(initial).items())

  model_index = {d.id: i for row in two.devices for i, d in enumerate(row)}
  shards = {}
  for label, tree in (('params', state2.params),
                      ('momentum', state2.opt_state[0].trace)):
    for layer in TOWER_LAYERS:
      for name in ('kernel', 'bias'):
        array = tree[layer]['towers'][name]
        shards[f'{label}/{layer}/{name}'] = [
            {'device': s.device.id, 'model_index': model_index[s.device.id],
             'towers': [s.index[0].start, s.index[0].stop],
             'shape': list(s.data.shape)} for s in array.addressable_shards]
  replicated = str(state2.params['fc6']['dense']['kernel'].sharding.spec)
  kernel_shapes = [state2.params[layer]['towers']['kernel'].shape
                   for layer in TOWER_LAYERS]
  return {'losses1': losses1, 'losses2': losses2, 'mismatched': mismatched,
          'moved': moved, 'shards': shards, 'fc6_spec': replicated,
          'kernel_collectives': _tower_kernel_collectives(hlo, kernel_shapes)}


def _layer_case() -> dict:
  """One grouped layer's output and gradients on a (data 2, model 2) mesh,
  where each tower's kernel gradient must also be summed over 'data', against
  the same layer with no mesh."""
  import jax
  import jax.numpy as jnp
  import flax.linen as nn
  from research import mesh as mesh_lib
  from research.models import towers

  layer = towers.TowerConv(8, 3, towers=2, padding=1)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(4, 5, 5, 6)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(4, 5, 5, 8)), jnp.float32)
  boxed = layer.init(jax.random.key(0), x)['params']
  params = nn.unbox(boxed)

  def loss(params, x):
    return jnp.sum(layer.apply({'params': params}, x) ** 2 * weights)

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  want = step(params, x)
  mesh = mesh_lib.make_mesh(model=2)
  with jax.set_mesh(mesh):
    placed = jax.device_put(params, mesh_lib.param_shardings(boxed, mesh))
    x_split = jax.device_put(x, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(mesh_lib.DATA)))
    got = step(placed, x_split)
    on_devices = 'shard_map' in str(jax.make_jaxpr(loss)(placed, x_split))
  close = jax.tree.map(lambda a, b: bool(np.allclose(a, b, rtol=1e-5,
                                                     atol=1e-5)), got, want)
  return {'mesh': dict(mesh.shape), 'on_devices': on_devices,
          'close': jax.tree.leaves(close)}


def _in_subprocess(case: str, devices: int) -> dict:
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu',
             XLA_FLAGS=xla_flags.with_host_devices(
                 os.environ.get('XLA_FLAGS', ''), devices))
  proc = subprocess.run([sys.executable, __file__, case], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def two_device_run():
  return _in_subprocess('alexnet', devices=2)


def test_towers_split_over_model_and_batch_over_data():
  run = _in_subprocess('layer', devices=4)
  assert run['mesh'] == {'data': 2, 'model': 2}
  assert run['on_devices']  # the layer took the per-device path
  assert len(run['close']) == 4 and all(run['close'])  # loss, kernel, bias, x


def test_two_towers_on_two_devices_train_as_on_one(two_device_run):
  run = two_device_run
  np.testing.assert_allclose(run['losses2'], run['losses1'], rtol=1e-5)
  assert run['moved'] > 1e-4  # the steps changed the params
  assert not run['mismatched'], run['mismatched']


def test_each_device_holds_only_its_tower(two_device_run):
  shards = two_device_run['shards']
  assert len(shards) == 12  # 3 layers x kernel, bias x params, momentum
  for name, per_device in shards.items():
    assert len(per_device) == 2, name
    for shard in per_device:
      tower = shard['model_index']
      assert shard['towers'] == [tower, tower + 1], (name, shard)
      assert shard['shape'][0] == 1, (name, shard)
    assert {s['device'] for s in per_device if s['towers'][0] == 0} == {0}
  assert two_device_run['fc6_spec'] == 'P()'  # the rest is replicated


def test_tower_weights_never_cross_devices(two_device_run):
  assert not two_device_run['kernel_collectives']


def test_tower_kernel_collectives_are_detected():
  """The HLO check above can fail: it sees tower-sized transfers in any
  layout, and ignores activations."""
  hlo = '\n'.join([
      '%p = f32[1,5,5,48,128]{4,3,2,1,0} collective-permute(%x), channel_id=3',
      '%g = f32[4,3,3,256]{2,1,0,3} all-gather(%y), dimensions={3}',
      '%r = (f32[128,48,5,5]{3,2,1,0}, f32[4]{0}) all-reduce(%z, %w)'])
  found = _tower_kernel_collectives(hlo, [(2, 5, 5, 48, 128)])
  assert [line[:2] for line in found] == ['%p', '%r']


def test_mesh_model_that_does_not_divide_the_devices_is_refused(tmp_path):
  proc = run_cli('--config=configs/neuron.py', f'--workdir={tmp_path}',
                 '--config.mesh.model=3', devices=2, check=False)
  assert proc.returncode != 0
  assert '--config.mesh.model=1 or 2' in proc.stderr
  assert 'Traceback' not in proc.stderr


if __name__ == '__main__':
  case = {'alexnet': _alexnet_case, 'layer': _layer_case}[sys.argv[1]]
  sys.stdout.write(json.dumps(case()) + '\n')
