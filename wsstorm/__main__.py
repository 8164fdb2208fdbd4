"""``python -m wsstorm`` is the ``wsstorm`` command."""

import sys

from wsstorm.cli import main

sys.exit(main())
