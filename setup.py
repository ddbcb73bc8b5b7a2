"""Only the optional C extension lives here; everything else is in pyproject.toml.

``ssuper_lib.data._native`` holds the panel loader's two hot loops (``ssuper_lib/data/_native.c``): decoding
only the rectangle of a panel JPEG that its crop needs, with the system's libjpeg-turbo (Debian:
libjpeg62-turbo-dev; conda: libjpeg-turbo), and the uint8 HWC -> float CHW conversion. Where a compiler or
those headers are missing, the build skips it with a warning and the loader takes its pure-Python paths (the
same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ssuper_lib.data._native", ["ssuper_lib/data/_native.c"], libraries=["jpeg"],
                  extra_compile_args=["-O3"], optional=True),
    ]
)
