"""``python -m fiqa_bench``: the ``fiqa-bench`` command."""

from __future__ import annotations

from .harness import main

if __name__ == "__main__":
    raise SystemExit(main())
