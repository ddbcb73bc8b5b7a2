"""Identity: which character a face shows.

* :mod:`~ssuper_lib.identity.classifier`: identity accuracy on synthetic data, where every face has a known
  character: cross-fitted CNN classifiers name true and generated faces;
* :mod:`~ssuper_lib.identity.label_free`: identity on comics without character labels: retrieval of the true
  face among faces of other series in a Siamese embedding, and its validation against the classifier;
* :mod:`~ssuper_lib.identity.siamese_training`: face sets with identities, training and evaluating the Siamese
  network; ``python -m ssuper_lib.identity``.
"""

from .classifier import *  # noqa: F401,F403
from .label_free import *  # noqa: F401,F403
from .siamese_training import *  # noqa: F401,F403
