"""The optional compiled step (issue 26): built where Cython and a C compiler are at hand,
skipped (``optional=True``) where not — handgrad then trains with its NumPy engines.

The extension is ``_fused.pyx`` and the elementwise kernels of ``_kernels.c`` (plain C,
each compiled for AVX-512, AVX2 and the baseline, chosen at load time: no
``-march=native``, so one build runs on any x86-64). Where glibc's vector math library
(libmvec) links, the softmax's exp and log use it."""

import os
import platform
import sys
import tempfile

from setuptools import setup

# -O3: the vectoriser at full strength (some Pythons build with -O2); sqrt as one
# instruction (no errno); no fused multiply-add, so that every kernel rounds as NumPy does
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off"]

PROBE = """
#include <math.h>
extern float expf(float) __attribute__((simd("notinbranch")));
void probe(float *restrict a, long n) { for (long k = 0; k < n; k++) a[k] = expf(a[k]); }
"""


def links_libmvec() -> bool:
    """Whether a loop of ``expf`` vectorises into glibc's libmvec and links here."""
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        return False
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(PROBE)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=FLAGS)
            compiler.link_shared_object(
                objects, os.path.join(tmp, "probe.so"), libraries=["mvec", "m"]
            )
        except Exception:  # no libmvec (musl, an old glibc, another compiler): scalar exp
            return False
    return True


try:
    import scipy  # noqa: F401  (the .pxd of scipy.linalg.cython_blas)
    from Cython.Build import cythonize
    from setuptools import Extension
except ImportError:  # no build tools: the pure-Python package
    ext_modules = []
else:
    mvec = links_libmvec()
    ext_modules = cythonize(
        [
            Extension(
                "handgrad._fused",
                ["src/handgrad/_fused.pyx", "src/handgrad/_kernels.c"],
                depends=["src/handgrad/_kernels.h"],
                extra_compile_args=FLAGS,
                define_macros=[("HG_MVEC", "1")] if mvec else [],
                libraries=["mvec", "m"] if mvec else [],
            )
        ],
        compiler_directives={"language_level": 3},
        quiet=True,
    )
    for ext in ext_modules:  # a failed compile is a warning: the NumPy engines remain
        ext.optional = True

setup(ext_modules=ext_modules)
