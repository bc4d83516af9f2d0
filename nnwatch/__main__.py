"""``python -m nnwatch``."""

from .cli.main import main

raise SystemExit(main())
