"""Identity: who a face is (classifier on synthetic data, label-free Siamese retrieval on real comics)."""

from .label_free import *  # noqa: F401,F403
