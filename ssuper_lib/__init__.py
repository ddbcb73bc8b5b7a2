"""ssuper_lib: the library behind the SSuperGAN research kit.

Everything with logic lives here; the notebooks in ``notebooks/`` only call into it and plot.

Importing it sets the C allocator to keep freed memory for CPU tensors (:mod:`ssuper_lib.allocator`;
``SSUPER_MALLOC=system`` opts out).
"""

from .allocator import keep_freed_memory as _keep_freed_memory

__version__ = "0.1.0"

_keep_freed_memory()
