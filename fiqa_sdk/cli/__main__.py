"""``python -m fiqa_sdk.cli``: the ``fiqa`` command."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
