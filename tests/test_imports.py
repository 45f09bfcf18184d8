"""The core imports light, and model files load whatever was imported before."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from handgrad import MLPClassifier
from handgrad.state import save_model


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
