"""The optional compiled step (issue 26): built where Cython and a C compiler are at hand,
skipped (``optional=True``) where not — handgrad then trains with its NumPy engines."""

from setuptools import setup

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
                ["src/handgrad/_fused.pyx"],
                # sqrt as one instruction (no errno): the same correctly rounded result
                extra_compile_args=["-fno-math-errno"],
            )
        ],
        compiler_directives={"language_level": 3},
        quiet=True,
    )
    for ext in ext_modules:  # a failed compile is a warning: the NumPy engines remain
        ext.optional = True

setup(ext_modules=ext_modules)
