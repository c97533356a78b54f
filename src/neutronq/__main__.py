"""``python -m neutronq``: the same command as ``neutronq`` (see ``neutronq --help``)."""

import sys

from neutronq.app.cli import main

sys.exit(main())
