# Shortcuts for the commands in README.md and benchmarks/README.md (run `make venv` first).
PY := .venv/bin/python
# Machines that pin an older OpenBLAS kernel through these variables: unset for benchmarks.
BENCH := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY)

.PHONY: venv test lint bench bench-memory bench-quality bench-fused bench-quick bench-latency bench-cluster bench-gpu
venv:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'
test:
	$(PY) -m pytest -n 2
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports
bench:  # the epoch benchmark, both workloads and dtypes (~7 min)
	$(BENCH) benchmarks/epoch.py --rounds 7
bench-memory:
	$(PY) benchmarks/memory.py
bench-quality:
	$(PY) benchmarks/quality.py
bench-fused:  # needs numba
	$(BENCH) benchmarks/fused_step.py --workload mnist cifar --dtype float32 float64
bench-quick:
	$(PY) benchmarks/epoch.py --quick
bench-latency:  # needs the onnx extra (in .[test])
	$(BENCH) benchmarks/latency.py
bench-cluster:  # needs the dask extra (in .[test])
	$(PY) benchmarks/search_cluster.py
bench-gpu:  # on a CUDA machine, with PyTorch built for CUDA
	$(PY) benchmarks/gpu.py
