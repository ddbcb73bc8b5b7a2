"""Only the optional C extension lives here; everything else is in pyproject.toml.

``ssuper_lib.data._jpeg_roi`` decodes the rectangle of a panel JPEG that a crop needs, with the system's
libjpeg-turbo (Debian: libjpeg62-turbo-dev; conda: libjpeg-turbo). Where a compiler or those headers are
missing, the build skips it with a warning and the loader decodes whole panels (the same pixels).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("ssuper_lib.data._jpeg_roi", ["ssuper_lib/data/_jpeg_roi.c"], libraries=["jpeg"],
                  extra_compile_args=["-O2"], optional=True),
    ]
)
