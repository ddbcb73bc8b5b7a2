import sys

from .siamese_training import main

sys.exit(main())
