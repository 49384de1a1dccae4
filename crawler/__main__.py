"""`python -m crawler`: the same entry point as the `crawler` command."""

from crawler.cli import main

raise SystemExit(main())
