import sys

from .sequences import main

sys.exit(main())
