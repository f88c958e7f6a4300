"""Score and filter millions of face images on a Ray cluster (Ray Data), resumably.

Needs the ``ray`` extra (``pip install 'fiqa-sdk[ray]'``); Ray is imported only when a function
of this module runs, never when ``fiqa_sdk`` is imported. docs/distributed.md explains the
design; in short:

- the inputs (a folder tree, a list of paths, a CSV / Parquet file of paths) become one ordered
  list, cut into shards of ``shard_size`` consecutive images;
- one Ray Data ``map_batches`` stage with a callable class (an actor pool: one
  :class:`~fiqa_sdk.QualityGate` per actor, its models loaded once) scores one shard per call
  and writes it as one Parquet file (temporary name, then an atomic rename);
- a manifest records the gate configuration and a fingerprint of the input list, so a rerun
  with the same output path scores only the shards that have no valid file yet, and refuses
  (:class:`~fiqa_sdk.OutputConflictError`) outputs of another gate or input list;
- the driver then reads the score column of every shard, applies ``discard=`` with
  :func:`fiqa_sdk.policy.discard_lowest` (the rule of :meth:`~fiqa_sdk.QualityGate.filter`) or
  ``threshold=`` with :func:`~fiqa_sdk.policy.apply_threshold`, and streams the shards into the
  final Parquet file, one shard at a time.

Every actor scores with ``gate.filter`` itself, so the scores are those of the single-process
gate built from the same :meth:`~fiqa_sdk.QualityGate.config`.
"""

from __future__ import annotations

from .inputs import list_images, resolve_inputs
from .job import RayFilterResult, ray_filter
from .report import unreadable_rows
from .storage import DEFAULT_SHARD_SIZE, DEFAULT_THREADS_PER_ACTOR, TABLE_SUFFIXES, is_uri
from .worker import FaceQualityScorer, build_gate, gate_config, score_dataset

__all__ = ["ray_filter", "RayFilterResult", "unreadable_rows", "score_dataset", "FaceQualityScorer",
           "resolve_inputs", "list_images", "gate_config", "build_gate", "is_uri",
           "DEFAULT_SHARD_SIZE", "DEFAULT_THREADS_PER_ACTOR", "TABLE_SUFFIXES"]
