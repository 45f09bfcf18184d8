"""Train the two-layer network of the notes on the real MNIST test set (10,000 images).

Loads ``mnist-t10k`` (MNIST's two official t10k files, checked against their pinned
checksums), splits the 10,000 images 80/20 stratified, scales the pixels to [0, 1],
trains an ``MLPClassifier`` (one hidden ReLU layer, softmax head) and prints the
accuracy.

    python examples/mnist_t10k.py [DATA_DIR] [--no-download]

DATA_DIR holds ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``
(directly or in ``DATA_DIR/mnist/``). Without it, handgrad's data folder is used:
``$HANDGRAD_DATA_DIR``, else the user cache, where missing files are downloaded unless
``--no-download`` is given. The same data from the command line:
``handgrad train --data mnist-t10k --data-dir DATA_DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from handgrad import MLPClassifier
from handgrad.data import Preprocessor, load_dataset
from handgrad.errors import HandgradError


def main(data_dir: str | None, download: bool = True) -> float:
    try:
        data = load_dataset("mnist-t10k", data_dir=data_dir, test_size=0.2, download=download)
    except HandgradError as exc:  # files absent or corrupt: the message says where and which
        sys.exit(f"mnist_t10k: {exc}")
    X_train, X_test, y_train, y_test = data.X_train, data.X_test, data.y_train, data.y_test
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        help="folder with MNIST's t10k files (default: $HANDGRAD_DATA_DIR or the user cache)",
    )
    parser.add_argument("--no-download", action="store_true", help="never download missing files")
    args = parser.parse_args()
    main(args.data_dir, download=not args.no_download)
