"""The import graph of mini_buildd/ has no cycle, counting every ``import`` and ``from ... import``
anywhere in a module (also inside functions, also under ``if TYPE_CHECKING``). Built with ``ast``
from the source files, nothing is imported.

Edges: ``import a.b`` -> ``a.b``; ``from pkg import name`` -> ``pkg.name`` when that is a module,
else ``pkg``; relative imports are resolved. The implied import of a module's own parent packages
(Python runs ``pkg/__init__.py`` before ``pkg.mod``) is not an edge.

Also counts the in-function imports of mini_buildd modules: a function that imports lazily hides a
dependency; the bound keeps it from growing back."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
PACKAGE = "mini_buildd"

# In-function import statements of mini_buildd modules (each statement once, however many names it
# imports). 165 before the cycles were broken; lower this when removing more.
MAX_IN_FUNCTION_IMPORTS = 47


def _modules():
    """Module name -> (path, is_package) of every .py file under mini_buildd/."""
    result = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        result[".".join(parts)] = (path, is_package)
    return result


def _resolve_relative(module, is_package, level, target):
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


class _Collector(ast.NodeVisitor):
    """Collects (target module, inside a function) of each import statement of one module."""

    def __init__(self, module, is_package, modules):
        self.module, self.is_package, self.modules = module, is_package, modules
        self.depth = 0
        self.imports = []  # (target, in_function, line)

    def _add(self, target, line):
        if target == PACKAGE or target.startswith(PACKAGE + "."):
            while target not in self.modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in self.modules:
                self.imports.append((target, self.depth > 0, line))

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function  # noqa: N815

    def visit_Import(self, node):  # noqa: N802
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node):  # noqa: N802
        """``from X import a, b``: X.a and X.b where those are modules, else X."""
        if node.level:
            base = _resolve_relative(self.module, self.is_package, node.level, node.module)
        else:
            base = node.module or ""
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.modules else base, node.lineno)


def _imports():
    """Module -> list of (target, in_function, line)."""
    modules = _modules()
    result = {}
    for module, (path, is_package) in modules.items():
        collector = _Collector(module, is_package, modules)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        result[module] = collector.imports
    return result


def _graph(imports):
    """Module -> sorted modules it imports (only the explicit imports are collected, so a module's
    implied import of its own parent packages is never an edge)."""
    return {module: sorted({target for target, _, _ in targets if target != module})
            for module, targets in imports.items()}


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan), each with one cycle path."""
    index, low, on_stack, stack, sccs = {}, {}, set(), [], []
    counter = [0]

    def strongconnect(node):
        work = [(node, iter(graph.get(node, ())))]
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[current])
            if low[current] == index[current]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == current:
                        break
                if len(component) > 1 or current in graph.get(current, ()):
                    sccs.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return [(component, _one_cycle(graph, component)) for component in sccs]


def _one_cycle(graph, component):
    """One closed path through the first module of a strongly connected component."""
    members = set(component)
    start = component[0]
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in graph.get(node, ()):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return list(reversed(path)) + [start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return [start]


def test_graph_is_complete():
    imports = _imports()
    assert "mini_buildd.models" in imports
    assert "mini_buildd.pipeline.packager" in imports
    assert any(targets for targets in imports.values())


def test_no_import_cycles():
    cycles = _cycles(_graph(_imports()))
    for component, path in cycles:
        print(f"cycle of {len(component)} modules: {component}")
        print("  e.g. " + " -> ".join(path))
    assert not cycles, f"{len(cycles)} import cycle(s), see the output"


def test_in_function_imports_bounded():
    """In-function import statements of mini_buildd modules (each statement once): only where the
    module can't be imported earlier (the models before Django is set up, in modules that command-line
    clients import without Django; Django's app ``ready()``) or is optional at run time."""
    imports = _imports()
    lazy = sorted({(module, line, target) for module, targets in imports.items() for target, inside, line in targets if inside})
    statements = {(module, line) for module, line, _target in lazy}
    for module, line, target in lazy:
        print(f"{module}:{line}: {target}")
    assert len(statements) <= MAX_IN_FUNCTION_IMPORTS, f"{len(statements)} in-function import statements (at most {MAX_IN_FUNCTION_IMPORTS})"


#: The direction of imports doc/design.md describes: modules (or packages) on the left never import
#: those on the right (in-function imports included).
_FORBIDDEN = [
    (("mini_buildd.tools", "mini_buildd.changes", "mini_buildd.dist", "mini_buildd.instance", "mini_buildd.events"),
     ("mini_buildd.models", "mini_buildd.pipeline", "mini_buildd.archive", "mini_buildd.api", "mini_buildd.webapp",
      "mini_buildd.engine", "mini_buildd.daemon", "mini_buildd.httpd", "mini_buildd.bootstrap", "mini_buildd.cli")),
    (("mini_buildd.models",),
     ("mini_buildd.pipeline", "mini_buildd.archive", "mini_buildd.api", "mini_buildd.webapp", "mini_buildd.engine",
      "mini_buildd.daemon", "mini_buildd.httpd", "mini_buildd.bootstrap", "mini_buildd.cli")),
    (("mini_buildd.pipeline", "mini_buildd.archive"),
     ("mini_buildd.api", "mini_buildd.webapp", "mini_buildd.engine", "mini_buildd.daemon", "mini_buildd.httpd", "mini_buildd.cli")),
]


def _within(module, prefixes):
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _against_direction(graph):
    return [f"{module} -> {target}" for lower, upper in _FORBIDDEN for module, targets in graph.items() if _within(module, lower)
            for target in targets if _within(target, upper)]


def test_imports_go_one_way():
    wrong = _against_direction(_graph(_imports()))
    assert not wrong, "imports against the direction of doc/design.md:\n" + "\n".join(wrong)


def test_forbidden_edges_are_seen():
    """The check above can fail: a made-up upward edge is reported."""
    assert _against_direction({"mini_buildd.tools.sbuild": ["mini_buildd.models.chroot"]}) == ["mini_buildd.tools.sbuild -> mini_buildd.models.chroot"]


#: No module of the package is longer than this (issue #14: one job per module).
MAX_MODULE_LINES = 700


def test_no_module_over_the_line_limit():
    long = {str(path.relative_to(ROOT)): n for path in sorted((ROOT / PACKAGE).rglob("*.py"))
            if "migrations" not in path.parts and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
