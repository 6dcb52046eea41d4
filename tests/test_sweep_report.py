"""A sweep's table scores each run at its best validation point (Goodfellow
et al. 2013, section 5.1), with the seeds' spread and the gap test."""
import json

import pytest

from launch import sweep_report


def write_points(workdir, finals: dict, bests: dict):
  """{(depth, seed): accuracy} at the last step and at the best validation."""
  points = [{'model.hidden_layers': d, 'seed': s} for d, s in finals]
  name = lambda p: f'd{p["model.hidden_layers"]}_s{p["seed"]}'
  for p in points:
    key = (p['model.hidden_layers'], p['seed'])
    (workdir / name(p)).mkdir(parents=True)
    (workdir / name(p) / 'results.json').write_text(json.dumps({
        'step': 100, 'test/sequence_accuracy': finals[key],
        'best': {'step': 60, 'test/sequence_accuracy': bests[key],
                 'validation/sequence_accuracy': bests[key]}}))
  return points, name


def test_the_table_reads_the_best_validation_point(tmp_path):
  # At the last step depth 11 is worst; at its best point it leads.
  finals = {(3, 0): 0.60, (3, 1): 0.62, (7, 0): 0.86, (7, 1): 0.87,
            (11, 0): 0.50, (11, 1): 0.52}
  bests = {(3, 0): 0.61, (3, 1): 0.63, (7, 0): 0.87, (7, 1): 0.88,
           (11, 0): 0.89, (11, 1): 0.90}
  points, name = write_points(tmp_path, finals, bests)
  text = sweep_report.write(tmp_path, 'depth', points, name)
  assert '| model.hidden_layers | best/test/sequence_accuracy (mean) | sd |' in text
  assert '| 11 | 0.8950 | 0.0071 | 2 | 0.5100 |' in text  # best, sd, final
  assert 'across 3 values: 1.000' in text
  assert 'hidden_layers=11 is 0.00 points below the best' in text
  rows = sweep_report.read_csv(tmp_path / 'results.csv')
  assert {r['best/step'] for r in rows} == {60}


def test_the_deepest_net_must_be_within_the_noise_of_the_best(tmp_path):
  finals = {(3, 0): 0.6, (3, 1): 0.6, (7, 0): 0.9, (7, 1): 0.9,
            (11, 0): 0.8, (11, 1): 0.8}
  bests = {(3, 0): 0.60, (3, 1): 0.62, (7, 0): 0.86, (7, 1): 0.88,
           (11, 0): 0.84, (11, 1): 0.86}
  points, name = write_points(tmp_path, finals, bests)
  text = sweep_report.write(tmp_path, 'depth', points, name)
  # 2 points behind, the seeds' SD 1.41 each: 2 SE of the difference 2.83.
  assert ('hidden_layers=11 is 2.00 points below the best '
          '(model.hidden_layers=7); 2 standard errors of the difference: '
          '2.83 points; within') in text
  assert 'Spearman rho of best/test/sequence_accuracy' in text


def test_one_seed_each_is_held_to_one_point(tmp_path):
  points, name = write_points(tmp_path, {(3, 0): 0.5, (11, 0): 0.5},
                              {(3, 0): 0.80, (11, 0): 0.785})
  assert 'not within max(1 point, 2 SE) = 1.00' in sweep_report.write(
      tmp_path, 'depth', points, name)


@pytest.mark.parametrize('results, metric', [
    ({'test/accuracy': 0.5, 'best': {'test/accuracy': 0.6}},
     'best/test/accuracy'),
    ({'test/accuracy': 0.5}, 'test/accuracy')])
def test_without_a_validation_split_the_last_step_is_scored(results, metric):
  rows = [{'status': 'done', **{k: v for k, v in results.items()
                                if k != 'best'},
           **{f'best/{k}': v for k, v in results.get('best', {}).items()}}]
  assert sweep_report.default_metric(rows) == metric


def test_points_finished_in_an_earlier_report_are_kept_not_rerun(
    tmp_path, capsys):
  from launch import sweep
  from research import configlib
  from research import errors
  from tests.helpers import REPO
  module, arg = configlib.config_module(REPO / 'configs/street_numbers.py:test')
  name, grid = sweep.parse_grid('model.hidden_layers=3,7,11;seed=0', module,
                                arg)
  points = sweep.expand(grid)
  here, elsewhere = tmp_path / 'here', tmp_path / 'elsewhere'
  # The 11-layer point finished on another machine, whose report was kept.
  for workdir, point, accuracy in [(here, points[0], 0.6),
                                   (here, points[1], 0.85),
                                   (elsewhere, points[2], 0.9)]:
    run = workdir / sweep.point_name(point)
    run.mkdir(parents=True)
    (run / 'results.json').write_text(json.dumps(
        {'test/sequence_accuracy': accuracy,
         'best': {'test/sequence_accuracy': accuracy}}))
  sweep_report.write(elsewhere, name, points, sweep.point_name)

  def report(*earlier, **opts):
    options = sweep.Options(config='c', earlier=earlier, **opts)
    sweep.run_sweep(options, here, module, name, points, [], [])
    return capsys.readouterr().out

  assert 'across 2 values' in report(report_only=True)
  assert '11,seed=0' in report(dry_run=True)  # would run it here
  text = report(elsewhere, report_only=True)
  assert '3 points, 3 finished earlier (skipped), 0 to run' in text
  assert 'across 3 values: 1.000' in text
  assert '| 11 | 0.9000 | 0.0000 | 1 |' in text
  assert f'| {elsewhere / "results.csv"} |' in text  # the table names it
  row, = [r for r in sweep_report.read_csv(here / 'results.csv')
          if r['model.hidden_layers'] == 11]
  assert row['status'] == 'done' and row['best/test/sequence_accuracy'] == 0.9
  assert row['from'] == str(elsewhere / 'results.csv')
  assert '11,seed=0' not in report(elsewhere, dry_run=True)
  with pytest.raises(errors.UserError, match='has no results.csv'):
    report(tmp_path / 'nowhere', report_only=True)
  with pytest.raises(errors.UserError, match='has no results.csv'):
    report(compare=(tmp_path / 'nowhere',), dry_run=True)  # before running
