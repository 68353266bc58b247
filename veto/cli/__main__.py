"""``python -m veto.cli``: the ``veto`` command without the installed script."""

from veto.cli import main

raise SystemExit(main())
