"""``python -m trio_smtp`` runs the command line."""

from ._cli import main

raise SystemExit(main())
