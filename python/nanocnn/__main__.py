"""``python -m nanocnn ...`` is the ``nanocnn`` command (see nanocnn.cli)."""
import sys

from .cli import main

sys.exit(main())
