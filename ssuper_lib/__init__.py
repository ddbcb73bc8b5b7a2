"""ssuper_lib: the library behind the SSuperGAN research kit.

Everything with logic lives here; the notebooks in ``notebooks/`` only call into it and plot.
"""

__version__ = "0.1.0"
