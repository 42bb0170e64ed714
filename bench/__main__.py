"""``python -m bench [--quick] [--only W1,W3] [--peers]``: see :mod:`bench.runner`."""

from __future__ import annotations

from bench.runner import main

raise SystemExit(main())
