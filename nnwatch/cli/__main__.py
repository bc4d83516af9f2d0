"""``python -m nnwatch.cli``."""

from .main import main

raise SystemExit(main())
