"""`python -m jindr_nb` is the `jindr` CLI."""

from .cli import main

raise SystemExit(main())
