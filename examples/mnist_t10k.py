"""Train the seed's two-layer network on the real MNIST test set (10,000 images).

Reads the original gzip IDX files with handgrad's IDX reader, splits the 10,000 images
into a stratified train and test part, scales the pixels to [0, 1], trains an
``MLPClassifier`` (one hidden ReLU layer, softmax head) and prints the accuracy.

    python examples/mnist_t10k.py [MNIST_FOLDER]

MNIST_FOLDER holds ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``
(default: ``../shared/data/mnist`` relative to the repository root). The same run from
the command line: ``handgrad train --data mnist-t10k --data-dir MNIST_FOLDER``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from handgrad import MLPClassifier
from handgrad.data import Preprocessor, load_mnist_files

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def main(folder: Path) -> float:
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        sys.exit(
            f"mnist_t10k: no MNIST test files in {folder} (want {images.name} and {labels.name})"
        )
    X, y = load_mnist_files(images, labels)  # uint8 (10000, 28, 28), int (10000,)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )
    pre = Preprocessor("scale", dtype=np.float32).fit(X_train)  # pixels / 255, flattened
    clf = MLPClassifier(
        hidden_layer_sizes=(256,),
        alpha=1e-3,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=15,
        random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():  # 15 epochs are enough; the loss still creeps down
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(pre.transform(X_train), y_train)
    seconds = time.perf_counter() - start
    accuracy = clf.score(pre.transform(X_test), y_test)
    print(
        f"MNIST t10k: {len(X_train)} training and {len(X_test)} test images, "
        f"784→256→10, {clf.n_iter_} epochs in {seconds:.1f} s"
    )
    print(
        f"train accuracy {clf.score(pre.transform(X_train), y_train):.4f}  "
        f"test accuracy {accuracy:.4f}"
    )
    return accuracy


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
