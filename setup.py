"""The package's one compiled module, ``monitor._native`` (the join's probing kernels).

Everything else is in pyproject.toml. The extension is optional: without a C compiler or
Python's headers the install goes on without it, and the package runs its numpy code
instead (the same results; ``monitor.native.available()`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "monitor._native",
            sources=["monitor/_native.c"],
            extra_compile_args=["-O2", "-std=c99"],
            optional=True,
        )
    ]
)
