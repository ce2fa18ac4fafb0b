"""``python -m tjtrainer``: see :mod:`tjtrainer.cli`."""

from tjtrainer.cli import main

raise SystemExit(main())
