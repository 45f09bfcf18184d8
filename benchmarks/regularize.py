"""Are dropout and the normalizations worth it? Test accuracy with and without each.

handgrad's MLPClassifier plain, with dropout 0.2, with batch norm, with layer norm and
with batch norm + dropout 0.2, against scikit-learn's MLPClassifier (which has neither),
with the same hyperparameters and the same weight seeds, on scikit-learn's digits,
breast-cancer and wine tables (stratified 75/25 split, features standardised) and on
MNIST's t10k set (10,000 images, pixels / 255, stratified 75/25 split) when its idx
files are found. It prints a Markdown table of the mean (± std over seeds) test accuracy
and fit seconds and writes the rows to ``benchmarks/results/regularize.json``.

    .venv/bin/python benchmarks/regularize.py [--seeds 2] [--mnist DIR] [--epochs 60]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from handgrad import MLPClassifier

SPLIT_SEED = 0
#: name -> the parameters beyond scikit-learn's (None: scikit-learn's own MLP)
VARIANTS: dict[str, dict | None] = {
    "sklearn": None,
    "plain": {},
    "dropout 0.2": {"dropout": 0.2},
    "batch norm": {"norm": "batch"},
    "layer norm": {"norm": "layer"},
    "batch norm + dropout 0.2": {"norm": "batch", "dropout": 0.2},
}
TABLES = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}


def _mnist(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """MNIST's t10k images (10000, 784) / 255 and labels, or None without the files."""
    from handgrad.data.idx import read_idx

    images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        return None
    X = read_idx(images).reshape(-1, 28 * 28).astype(np.float32) / 255.0
    return X, read_idx(labels).astype(np.int64)


def evaluate(variant: dict | None, data, params: dict, seed: int, scale: bool) -> tuple:
    """(test accuracy, fit seconds) of one classifier (in a StandardScaler pipeline for
    tables)."""
    X_tr, X_te, y_tr, y_te = data
    est = (SklearnMLP if variant is None else MLPClassifier)(
        random_state=seed, **params, **(variant or {})
    )
    model = make_pipeline(StandardScaler(), est) if scale else est
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
    return float(model.score(X_te, y_te)), seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=60, help="max_iter on the tables")
    parser.add_argument("--mnist-epochs", type=int, default=10)
    parser.add_argument(
        "--mnist",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
        help="folder with MNIST's t10k idx files (default: the shared data folder beside "
        "the checkout); the MNIST rows are left out where they are not found",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tables", nargs="*", choices=list(TABLES), default=list(TABLES))
    args = parser.parse_args(argv)

    datasets = []
    for name in args.tables:
        X, y = TABLES[name](return_X_y=True)
        split = train_test_split(X, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED)
        params = dict(hidden_layer_sizes=(100,), max_iter=args.epochs, alpha=1e-4)
        datasets.append((name, split, params, True))
    mnist = _mnist(args.mnist)
    if mnist is not None:
        split = train_test_split(*mnist, test_size=0.25, stratify=mnist[1], random_state=SPLIT_SEED)
        params = dict(hidden_layer_sizes=(128,), max_iter=args.mnist_epochs, batch_size=200)
        datasets.append(("mnist_t10k", split, params, False))

    rows = []
    for name, split, params, scale in datasets:
        for variant, extra in VARIANTS.items():
            runs = [evaluate(extra, split, params, seed, scale) for seed in range(args.seeds)]
            accuracy = [a for a, _ in runs]
            rows.append(
                {
                    "dataset": name,
                    "variant": variant,
                    "accuracy": statistics.mean(accuracy),
                    "std": statistics.pstdev(accuracy),
                    "seconds": statistics.mean(s for _, s in runs),
                    "params": {
                        k: list(v) if isinstance(v, tuple) else v for k, v in params.items()
                    },
                }
            )
            r = rows[-1]
            score = f"{r['accuracy']:.4f} ± {r['std']:.4f}"
            print(f"{name:13s} {variant:26s} {score}  {r['seconds']:.1f} s", flush=True)

    print("\n| dataset | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    for name, *_ in datasets:
        cells = [f"{r['accuracy']:.4f} ± {r['std']:.4f}" for r in rows if r["dataset"] == name]
        print(f"| {name} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "seeds": args.seeds,
        "machine": platform.platform(),
        "sklearn": sklearn.__version__,
        "rows": rows,
    }
    (args.out / "regularize.json").write_text(json.dumps(record, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
