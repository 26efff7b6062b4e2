"""`python -m benchmark ...` is the same as `mmtt ...` (torchrun launches modules this way)."""

from benchmark.cli import main

raise SystemExit(main())
