"""The core imports light, imports point one way, and model files load in a fresh process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

import handgrad
from handgrad import MLPClassifier
from handgrad.state import save_model

SRC = Path(handgrad.__file__).parent


def _module_names() -> dict[str, Path]:
    """``handgrad.cli.train`` -> its file, for every module under src/handgrad."""
    names = {}
    for path in SRC.rglob("*.py"):
        parts = ["handgrad", *path.relative_to(SRC).with_suffix("").parts]
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _import_graph() -> dict[str, set[str]]:
    """Module -> the handgrad modules it imports, anywhere in its file (module level,
    inside functions, under TYPE_CHECKING). ``from P import X`` imports P, and P.X too
    where that is a module; relative imports are resolved."""
    modules = _module_names()
    graph = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                found.add(source)
                found.update(f"{source}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, …, a]`` of the graph, or None (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if cycle := visit(dep):
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((c for n in sorted(graph) if (c := visit(n))), None)


def test_the_cycle_finder_finds_cycles_and_reads_every_kind_of_import():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    graph = _import_graph()
    assert "handgrad.layers" in graph["handgrad.network"]  # from handgrad.layers import …
    assert "handgrad.estimator" in graph["handgrad"]  # deferred, inside __getattr__
    assert "handgrad.errors" in graph["handgrad.cli"]  # from handgrad.errors import …


def test_imports_inside_handgrad_point_one_way():
    cycle = _find_cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_the_package_itself():
    # handgrad/__init__ is the top floor: a module importing it (``from handgrad import
    # X``) points upward; import from the submodule instead.
    upward = sorted(name for name, deps in _import_graph().items() if "handgrad" in deps)
    assert upward == [], f"these modules import the package handgrad: {upward}"


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_handgrad_needs_no_scikit_learn_or_matplotlib():
    out = _python(
        "import sys, handgrad; from handgrad.training import fit; "
        "print(sorted(m for m in ('sklearn', 'matplotlib', 'pandas') "
        "if m in sys.modules))"
    )
    assert out == "[]"


def test_a_saved_classifier_loads_in_a_fresh_process(tmp_path):
    X = np.random.default_rng(0).standard_normal((30, 3))
    y = np.array(["a", "b", "c"] * 10)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    path = save_model(tmp_path / "clf.safetensors", clf)
    out = _python(
        f"from handgrad.state import load_model; m = load_model({str(path)!r}); "
        "print(type(m).__name__, m.classes_.tolist())"
    )
    assert out == "MLPClassifier ['a', 'b', 'c']"


def test_the_reference_math_imports_only_the_array_shims():
    graph = _import_graph()
    assert graph["handgrad.layers"] == {"handgrad._xp"}  # the notes, and nothing else
    assert graph["handgrad.inplace"] == set()  # NumPy's kernels
    assert not graph["handgrad.heads"] & {"handgrad.network", "handgrad.workspace"}
