"""Allow ``python -m loadkit``."""

from loadkit.cli import main

raise SystemExit(main())
