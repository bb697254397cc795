"""python -m nanocnn.benchmark [options]: the same as `nanocnn bench [options]`."""
import sys

from . import main

sys.exit(main())
