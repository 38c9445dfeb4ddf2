"""``python -m cryostream.cli``: the ``cryostream`` command."""

import sys

from cryostream.cli import main

sys.exit(main())
