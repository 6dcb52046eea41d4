"""A sweep's results as WORKDIR/results.csv, WORKDIR/results.md and a plot.

results.csv has one row per point: its name, status, dataset, the swept config
values, every final metric of its results.json and, as 'best/<metric>', the
metrics of its best validation evaluation. results.md opens with the command
and the variant that ran (every config value the points share that differs
from the config file's own `get_config()`, the paper's configuration), then
that table (main columns) and, per dataset, the metric's mean over seeds for
each value of the swept field with Spearman's rank correlation between the
two: does the metric rise with the field? The plot,
WORKDIR/<sweep>_vs_accuracy.png, draws the metric against the first swept
field other than the seed, one line per dataset (mean over seeds, the seeds'
spread as error bars), the lines of other sweeps' results.csv given to compare
with, and the config file's published curve (its SWEEP_REFERENCES, e.g.
Goodfellow et al.'s Fig. 5). Points finished in an earlier report's
workdir (another machine's, or one since cleaned) come from that report's
results.csv: `earlier_rows`.
"""
import csv
import json
import math
import pathlib

import numpy as np

from research import configlib
from research import errors


def results_csv(folder) -> pathlib.Path:
  """FOLDER/results.csv of a report given to --earlier or --compare."""
  path = pathlib.Path(folder) / 'results.csv'
  if not path.is_file():
    raise errors.UserError(
        f'{folder} has no results.csv: give the folder of a report of a '
        'sweep over the same field (the WORKDIR it ran in, or a copy such '
        'as results/<sweep>/).')
  return path


def earlier_rows(folders) -> dict:
  """{point name: row} of the finished points in the results.csv of each
  folder (an earlier report of the same sweep), each row's 'from' naming
  its file; a later folder's row replaces an earlier one's."""
  rows = {}
  for path in map(results_csv, folders):
    for row in read_csv(path):
      if row.get('status') == 'done':
        rows[row['point']] = {**row, 'from': str(path)}
  return rows


def collect(workdir: pathlib.Path, points: list, point_name,
            codes: dict | None = None, point_dir=None,
            earlier: dict | None = None) -> list[dict]:
  """A row per point; `codes`: this sweep's exit code of each point it ran;
  `point_dir(point)`: its run's folder (default WORKDIR/<point name>);
  `earlier`: `earlier_rows`, for points with no results.json here."""
  codes, earlier = codes or {}, earlier or {}
  point_dir = point_dir or (lambda p: workdir / point_name(p))
  rows = []
  for point in points:
    name = point_name(point)
    row = {'point': name, **point}
    results = point_dir(point) / 'results.json'
    config = point_dir(point) / 'config.json'
    if config.exists():
      row['dataset'] = json.loads(config.read_text())['data']['name']
    if results.exists():
      row['status'] = 'done'
      numbers = lambda d: {k: v for k, v in d.items() if isinstance(
          v, (int, float)) and not isinstance(v, bool)}
      results = json.loads(results.read_text())
      row.update(numbers(results))
      row.update({f'best/{k}': v
                  for k, v in numbers(results.get('best') or {}).items()})
    elif name in earlier:
      row = {**earlier[name], **row}
    elif codes.get(name):
      row['status'] = f'failed (exit {codes[name]})'
    else:
      row['status'] = 'started' if config.exists() else 'not started'
    rows.append(row)
  return rows


def default_metric(rows: list) -> str:
  """Test accuracy at the best validation evaluation where runs have one:
  every net scored at "the best stopping point" (Goodfellow et al. 2013,
  section 5.1); else at the last step."""
  for metric in ('best/test/sequence_accuracy', 'best/test/accuracy',
                 'test/sequence_accuracy', 'test/accuracy'):
    if any(metric in r for r in rows):
      return metric
  return 'test/accuracy'


def spearman(xs, ys) -> float:
  """Spearman's rho (average ranks for ties); nan unless both vary."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if len(set(xs)) < 2 or len(set(ys)) < 2:
    return float('nan')
  return float(stats.spearmanr(xs, ys).statistic)


def summarise(rows: list, swept: list, field: str, metric: str) -> dict:
  """{line label: [(x, mean, sd, n), ...] sorted by x} over finished points;
  a line per dataset and per value of the other swept fields but the seed;
  sd is the seeds' sample standard deviation (0 for one seed)."""
  lines = {}
  others = [k for k in swept if k not in (field, 'seed')]
  for r in rows:
    if r['status'] != 'done' or metric not in r:
      continue
    label = ', '.join([str(r.get('dataset', '?'))] +
                      [f'{k.split(".")[-1]}={r[k]}' for k in others])
    lines.setdefault(label, {}).setdefault(r[field], []).append(r[metric])
  return {label: [(x, float(np.mean(v)),
                   float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                  for x, v in sorted(by_x.items())]
          for label, by_x in lines.items()}


def _fmt(v) -> str:
  if isinstance(v, float):
    return f'{v:.4f}' if abs(v) < 10 else f'{v:.1f}'
  return str(v)


def variant(points: list, swept: list, module, point_dir) -> list:
  """'key: paper -> this sweep' for each config value the points share that
  differs from `module.get_config()` (no argument: the paper's
  configuration), read from the first point's config.json."""
  if module is None or not hasattr(module, 'get_config'):
    return []
  for point in points:
    path = point_dir(point) / 'config.json'
    if path.exists():
      ran = json.loads(path.read_text())
      break
  else:
    return []
  paper = json.loads(module.get_config().to_json_best_effort())
  return [line for line in configlib.differences(paper, ran)
          if line.split(':', 1)[0] not in swept]


def markdown(rows, swept, sweep, field, metric, summary, command=None,
             changes=()) -> str:
  final = metric.removeprefix('best/')
  main = [k for k in (metric, final, 'best/step',
                      final.replace('test/', 'validation/'),
                      'test/digit_accuracy', 'test/coverage_at_98', 'epoch',
                      'train_seconds') if any(k in r for r in rows)]
  main = list(dict.fromkeys(main))
  head = ['point', 'status', 'dataset', *swept, *main]
  head += ['from'] if any('from' in r for r in rows) else []
  out = [f'# Sweep {sweep!r}: {metric} against {field}', '']
  if command:
    out += ['```', command, '```', '']
  if changes:
    out += ["Variant: what every point changes from the config file's "
            "`get_config()` (the paper's configuration):", '']
    out += [f'- {line}' for line in changes] + ['']
  out += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    out.append('| ' + ' | '.join(_fmt(r.get(k, '')) for k in head) + ' |')
  finals = summarise(rows, swept, field, final) if final != metric else {}
  for label, points in summary.items():
    xs = [p[0] for p in points]
    numeric = all(isinstance(x, (int, float)) for x in xs)
    rho = spearman(xs, [p[1] for p in points]) if numeric else float('nan')
    last = {p[0]: p[1] for p in finals.get(label, [])}
    out += ['', f'## {label}', '',
            f'| {field} | {metric} (mean) | sd | seeds |'
            + (f' {final} (mean) |' if last else ''),
            '|---|---|---|---|' + ('---|' if last else '')]
    out += [f'| {x} | {m:.4f} | {s:.4f} | {n} |'
            + (f' {last[x]:.4f} |' if x in last else (' |' if last else ''))
            for x, m, s, n in points]
    out += ['', f'Spearman rho of {metric} against {field} across '
            f'{len(xs)} values: {rho:.3f}'
            + (' (rises with it)' if rho > 0 else '') if not math.isnan(rho)
            else 'Spearman rho: needs two finished numeric values that vary.']
    if numeric and len(points) > 1:
      out += ['', top_gap(points, field)]
  return '\n'.join(out) + '\n'


def top_gap(points: list, field: str) -> str:
  """How far the largest value of the field (the deepest net) is below the
  best one, against max(1 point, 2 standard errors of the difference of the
  two means): the bar a finding that "more is better" must clear at this
  many seeds."""
  best = max(points, key=lambda p: p[1])
  top = max(points, key=lambda p: p[0])
  gap = best[1] - top[1]
  se = math.sqrt(best[2] ** 2 / best[3] + top[2] ** 2 / top[3])
  bar = max(0.01, 2 * se)
  verdict = 'within' if gap <= bar else 'not within'
  return (f'{field}={top[0]} is {100 * gap:.2f} points below the best '
          f'({field}={best[0]}); 2 standard errors of the difference: '
          f'{200 * se:.2f} points; {verdict} max(1 point, 2 SE) = '
          f'{100 * bar:.2f}.')


def plot(path, sweep, field, metric, summary, reference=None):
  """`summary` as summarise returns it, its labels naming the lines."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  percent = 'accuracy' in metric or 'coverage' in metric
  scale = 100.0 if percent else 1.0
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, points in summary.items():
    # Tuples (e.g. hidden layer sizes) are drawn as categories.
    xs = [p[0] if isinstance(p[0], (int, float)) else str(p[0])
          for p in points]
    ax.errorbar(xs, [p[1] * scale for p in points],
                yerr=[p[2] * scale for p in points], marker='o', capsize=3,
                label=label)
  if reference:
    name, values = reference
    ax.plot(list(values), list(values.values()), 'k--', marker='s',
            label=name)
  ax.set_xlabel(field.split('.')[-1].replace('_', ' '))
  ax.set_ylabel(metric + (' (%)' if percent else ''))
  ax.set_title(f'sweep {sweep!r}')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def number_or_text(text: str):
  """A value written as text (a CSV cell, a command-line grid) as a number
  where it reads as one."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def read_csv(path: pathlib.Path) -> list[dict]:
  """results.csv's rows with numbers as numbers, as `collect` made them."""
  with open(path, newline='') as f:
    return [{k: number_or_text(v) for k, v in row.items() if v != ''}
            for row in csv.DictReader(f)]


def write(workdir: pathlib.Path, sweep: str, points: list, point_name,
          module=None, metric: str | None = None, command: str | None = None,
          compare: tuple = (), codes: dict | None = None,
          point_dir=None, earlier: dict | None = None) -> str:
  """Writes results.csv, results.md and the plot; returns the markdown.

  `compare`: folders of other sweeps over the same field whose results.csv
  lines the plot draws too, each labelled with its folder's name.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  point_dir = point_dir or (lambda p: workdir / point_name(p))
  rows = collect(workdir, points, point_name, codes, point_dir, earlier)
  metric = metric or default_metric(rows)
  columns = list(dict.fromkeys(k for r in rows for k in r))
  with open(workdir / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  swept = list(points[0])
  field = ([k for k in swept if k != 'seed'] or swept)[0]
  summary = summarise(rows, swept, field, metric)
  changes = variant(points, swept, module, point_dir)
  text = markdown(rows, swept, sweep, field, metric, summary, command, changes)
  (workdir / 'results.md').write_text(text)
  lines = {f'{workdir.name}: {label}': points
           for label, points in summary.items()}
  for other in map(pathlib.Path, compare):
    other_rows = read_csv(results_csv(other))
    lines.update({f'{other.name}: {label}': points for label, points in
                  summarise(other_rows, swept, field, metric).items()})
  reference = getattr(module, 'SWEEP_REFERENCES', {}).get(sweep)
  plot(workdir / f'{sweep}_vs_accuracy.png', sweep, field, metric, lines,
       reference)
  return text
