"""``python -m siamtext`` runs the command-line interface."""

from siamtext.cli import main

raise SystemExit(main())
