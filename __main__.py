"""`python -m ember` is the `ember` command."""

from ember.cli import main

raise SystemExit(main())
