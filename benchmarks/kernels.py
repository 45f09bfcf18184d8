"""The elementwise kernels of the compiled step (``src/handgrad/_kernels.c``), one call
each at the sizes of a digits step and an MNIST-like step (batch 200), in µs.

Each kernel is called through ctypes from the built extension (``handgrad._fused``) or
from any shared library given with ``--lib`` (e.g. ``_kernels.c`` compiled with
``-DHG_NO_CLONES``: the baseline x86-64 target, SSE2). Libraries are timed in turn
round by round: the minimum over rounds of the mean of ``--reps`` calls, less the same
for the function on size 0 (the cost of a ctypes call). One thread; a quiet machine.

    python benchmarks/kernels.py
    python benchmarks/kernels.py --lib sse2=/tmp/k_sse2.so --lib built=src/handgrad/_fused….so
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import time

import numpy as np

P, N, I, D = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_double
BATCH = 200
#: name: (input features, hidden units, classes, rows of X to gather from)
WORKLOADS = {"digits": (64, 100, 10, 1797), "MNIST-like": (784, 256, 10, 10000)}


def calls(lib: ctypes.CDLL, dtype, workload: str) -> dict[str, tuple]:
    """name → (function, arguments, the same with the size 0) for one workload."""
    d_in, h, C, rows = WORKLOADS[workload]
    n, sfx = BATCH, "f" if dtype == np.float32 else "d"
    rng = np.random.default_rng(0)
    keep: list[np.ndarray] = []  # alive as long as the table

    def arr(*shape: int, value: float | None = None) -> int:
        a = rng.standard_normal(shape) if value is None else np.full(shape, value)
        keep.append(a.astype(dtype))
        return keep[-1].ctypes.data

    def fn(name, restype, *argtypes):
        f = getattr(lib, f"hg_{name}_{sfx}")
        f.restype, f.argtypes = restype, list(argtypes)
        return f

    weights = d_in * h + h * C
    params = weights + h + C
    y = rng.integers(0, C, n).astype(np.int64)
    labels, index = np.empty(n, np.int64), rng.integers(0, rows, n).astype(np.int64)
    keep += [y, labels, index]
    table = {  # name: (function, arguments, the index of the size among them)
        f"add_bias {n}×{h}": (fn("add_bias", None, P, P, N, N), (arr(n, h), arr(h), n, h), 2),
        f"add_bias_relu {n}×{h}": (
            fn("add_bias_relu", None, P, P, N, N),
            (arr(n, h), arr(h), n, h),
            2,
        ),
        f"relu_grad {n}×{h}": (
            fn("relu_grad", None, P, P, N, N, P),
            (arr(n, h), arr(n, h), n, h, arr(h)),
            2,
        ),
        f"column_sums {n}×{C}": (
            fn("column_sums", None, P, N, N, P),
            (arr(n, C), n, C, arr(C)),
            1,
        ),
        f"sqnorm {weights}": (fn("sqnorm", D, P, N), (arr(weights), weights), 1),
        f"softmax_xent {n}×{C}": (
            fn("softmax_xent", D, P, P, P, P, P, N, N, D),
            (arr(n, C), arr(n, C), arr(n), labels.ctypes.data, y.ctypes.data, n, C, 1 / n),
            5,
        ),
        f"adam {params}": (
            fn("adam", None, P, P, P, P, N, D, D, D, D),
            (
                *(arr(params) for _ in range(3)),
                arr(params, value=0.1),
                params,
                1e-3,
                0.9,
                0.999,
                1e-8,
            ),
            4,
        ),
        f"momentum {params}": (
            fn("momentum", None, P, P, P, N, D, D, I),
            (arr(params), arr(params), arr(params), params, 1e-3, 0.9, 0),
            3,
        ),
        f"gather_rows {n}×{d_in}": (
            fn("gather_rows", None, P, P, P, P, P, P, N, N),
            (arr(n, d_in), None, arr(rows, d_in), None, index.ctypes.data, None, n, d_in),
            6,
        ),
    }
    out = {"_keep": (None, tuple(keep), ())}
    for name, (f, args, size_at) in table.items():
        empty = list(args)
        empty[size_at] = 0
        out[name] = (f, args, tuple(empty))
    return out


def per_call(f, args, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        f(*args)
    return (time.perf_counter() - t) / reps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", action="append", default=[], help="label=path.so")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args(argv)
    libs = {}
    for spec in args.lib or [f"built={importlib.import_module('handgrad._fused').__file__}"]:
        label, path = spec.split("=", 1)
        libs[label] = ctypes.CDLL(path)
    labels = list(libs)
    head = " | ".join(f"{label} µs" for label in labels)
    ratio = f" | {labels[0]} ÷ {labels[-1]}" if len(labels) > 1 else ""
    print(f"| dtype | workload | kernel | {head}{ratio} |")
    print("|---" * (3 + len(labels) + bool(ratio)) + "|")
    for dtype in (np.float32, np.float64):
        for workload in WORKLOADS:
            tables = {label: calls(lib, dtype, workload) for label, lib in libs.items()}
            names = [k for k in tables[labels[0]] if not k.startswith("_")]
            for name in names:
                full = dict.fromkeys(labels, np.inf)
                empty = dict.fromkeys(labels, np.inf)
                for _ in range(args.rounds):
                    for label in labels:
                        f, with_size, without = tables[label][name]
                        full[label] = min(full[label], per_call(f, with_size, args.reps))
                        empty[label] = min(empty[label], per_call(f, without, args.reps))
                best = {label: full[label] - empty[label] for label in labels}
                cells = " | ".join(f"{best[label] * 1e6:.2f}" for label in labels)
                r = f" | {best[labels[0]] / best[labels[-1]]:.2f}×" if ratio else ""
                print(f"| {np.dtype(dtype).name} | {workload} | {name} | {cells}{r} |")


if __name__ == "__main__":
    main()
