"""``python -m cryostream``: the ``cryostream`` command."""

from cryostream.cli import main

raise SystemExit(main())
