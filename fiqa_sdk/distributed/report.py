"""Reading back the table :func:`~fiqa_sdk.distributed.ray_filter` wrote."""

from __future__ import annotations

import os
from typing import Iterator

from ..batch import UNREADABLE_REASONS
from .storage import _fs


def unreadable_rows(out: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(path, message)`` of every image of a :func:`~fiqa_sdk.distributed.ray_filter` output
    table that could not be read (reasons :data:`fiqa_sdk.batch.UNREADABLE_REASONS`), in table
    order; the message is the reason when the row has none. Streams the Parquet file (local
    path or URI) batch by batch, reading three columns only.

    Examples
    --------
    >>> from fiqa_sdk.distributed import ray_filter, unreadable_rows
    >>> res = ray_filter("photos/", "runs/photos.parquet", discard=0.1)  # doctest: +SKIP
    >>> for path, message in unreadable_rows(res.out):  # doctest: +SKIP
    ...     print(path, message)
    photos/notes.jpg <bytes>: not a recognised image format
    """
    import pyarrow.parquet as pq

    fs, inner = _fs(out)
    with fs.open_input_file(inner) as fh:
        for b in pq.ParquetFile(fh).iter_batches(columns=["path", "reason", "message"]):
            for path, reason, msg in zip(*(b.column(i).to_pylist() for i in range(3))):
                if reason in UNREADABLE_REASONS:
                    yield path, msg or reason
