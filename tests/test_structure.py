"""The house a newcomer reads: README's layout map matches the tree, the
library's imports form no circle, and its layers point one way (the library
imports no experiment config; visualization does not import the loop)."""
import ast
import pathlib
import re

from tests.helpers import REPO

PACKAGES = ('research', 'configs', 'launch', 'benchmarks', 'tests')


def _layout() -> str:
  text = (REPO / 'README.md').read_text()
  section = text.split('\n## Layout\n', 1)[1]
  return section.split('```', 2)[1]


def _named_paths(layout: str) -> set:
  """Every file and folder the map names, as paths from the repo root: a
  folder line ('data/  ...'), the files on it and on the lines continuing
  it, and file lines under a top folder ('  main.py  ...')."""
  named, top, folder = set(), '', ''
  for line in layout.splitlines():
    if not line.strip():
      continue
    indent = len(line) - len(line.lstrip())
    head = line.split()[0]
    if indent == 0:
      top = folder = head
    elif indent == 2 and head.endswith('/'):
      folder = top + head
    elif indent == 2:
      folder = top
    if head.endswith('/') and indent <= 2:
      named.add(folder.rstrip('/'))
    for word in re.findall(r'\b\w+\.(?:py|md|sbatch|tsv)\b', line):
      named.add(folder + word)
  return named


def test_every_file_the_layout_names_exists():
  named = _named_paths(_layout())
  assert len(named) > 60
  missing = sorted(p for p in named if not (REPO / p).exists())
  assert not missing, missing


def test_every_package_directory_is_named():
  named = _named_paths(_layout())
  for top in PACKAGES:
    assert top in named, top
    for init in (REPO / top).rglob('__init__.py'):
      folder = init.parent.relative_to(REPO).as_posix()
      if '.venv' in folder or '__pycache__' in folder:
        continue
      assert folder in named, folder


def _imports(path: pathlib.Path) -> set:
  """The research.* modules a file imports (anywhere in it)."""
  tree = ast.parse(path.read_text())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from pkg import module` imports the module; `from module import
      # name`, the module.
      for alias in node.names:
        out.add(f'{node.module}.{alias.name}')
      out.add(node.module)
  return out


def _module_graph() -> dict:
  modules = {}
  for path in (REPO / 'research').rglob('*.py'):
    name = '.'.join(path.relative_to(REPO).with_suffix('').parts)
    modules[name.removesuffix('.__init__')] = path
  graph = {}
  for name, path in modules.items():
    imported = {m for m in _imports(path) if m in modules and m != name}
    # A package named only as the parent of a module imported from it.
    graph[name] = {m for m in imported
                   if not any(o.startswith(m + '.') for o in imported)}
  return graph


def test_no_import_circles_in_research():
  graph = _module_graph()
  state, cycles = {}, []

  def visit(node, stack):
    state[node] = 'open'
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 'open':
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, cycles


def test_the_library_imports_no_config_and_seeing_no_loop():
  for path in (REPO / 'research').rglob('*.py'):
    imports = _imports(path)
    assert not any(m == 'configs' or m.startswith('configs.')
                   for m in imports), path
    if 'visualize' in path.parts:
      assert 'research.train' not in imports, path


def test_every_error_class_a_command_may_meet_is_a_user_error():
  """The commands print a research.errors.UserError as one paragraph and a
  traceback for anything else; an error class of the library or the
  launchers that does not derive from it would reach the user as a trace."""
  loose = []
  for path in [*(REPO / 'research').rglob('*.py'), *(REPO / 'launch').glob('*.py')]:
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ClassDef) and node.name.endswith('Error'):
        bases = {ast.unparse(b) for b in node.bases}
        if node.name != 'UserError' and 'errors.UserError' not in bases:
          loose.append(f'{path.relative_to(REPO)}:{node.lineno} {node.name}')
  assert not loose, loose
