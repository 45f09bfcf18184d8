"""The optional compiled step (issue 26): built where Cython and a C compiler are at hand,
skipped (``optional=True``) where not — handgrad then trains with its NumPy engines.

The extension is ``_fused.pyx`` and the elementwise kernels of ``_kernels.c`` (plain C,
each compiled for AVX-512, AVX2 and the baseline, chosen at load time: no
``-march=native``, so one build runs on any x86-64)."""

from setuptools import setup

# -O3: the vectoriser at full strength (some Pythons build with -O2); sqrt as one
# instruction (no errno); no fused multiply-add, so that every kernel rounds as NumPy
# does; no trapping math, so that selects vectorise (FP exception flags only: no value
# changes)
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fno-trapping-math"]

try:
    import scipy  # noqa: F401  (the .pxd of scipy.linalg.cython_blas)
    from Cython.Build import cythonize
    from setuptools import Extension
except ImportError:  # no build tools: the pure-Python package
    ext_modules = []
else:
    ext_modules = cythonize(
        [
            Extension(
                "handgrad._fused",
                ["src/handgrad/_fused.pyx", "src/handgrad/_kernels.c"],
                depends=["src/handgrad/_kernels.h"],
                extra_compile_args=FLAGS,
            )
        ],
        compiler_directives={"language_level": 3},
        quiet=True,
    )
    for ext in ext_modules:  # a failed compile is a warning: the NumPy engines remain
        ext.optional = True

setup(ext_modules=ext_modules)
