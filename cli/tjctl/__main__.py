"""``python -m tjctl``."""

from tjctl.main import main

raise SystemExit(main())
