"""Identity: who a face is (classifier on synthetic data, label-free Siamese retrieval on real comics)."""

from .label_free import *  # noqa: F401,F403
from .classifier import IdentityClassifier, cross_fit_identity, random_shift, train_identity_classifier  # noqa: F401
