"""The registered experiments, one module each (``fiqa-bench run NAME`` runs module ``NAME``);
:func:`fiqa_bench.harness.load_experiments` imports them all. Modules starting with ``_`` hold
code shared by several experiments."""
