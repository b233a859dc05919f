"""``python -m trio_smtp`` runs the command line."""

from ._cli.main import main

raise SystemExit(main())
