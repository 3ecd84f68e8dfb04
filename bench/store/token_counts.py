"""`token_counts.parquet`: output-token counts made after a run, independently of the server's
usage (the scenario's `tokens:` section; bench.target.tokencount counts).

One row per request and counting source: `request_id` (int64), `source` (TOKEN_SOURCES),
`count` (int64: the output tokens that source counted; null when it could not count the request). The records are
never changed: the counts sit beside them, in their own file, written once the run's records
are closed. A run without the file (never opted in, or from before it existed) has no such
counts: `read_token_counts` returns None.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.errors import RunFailed

__all__ = ["SOURCE_SERVER_TOKENIZE", "SOURCE_TOKENIZER", "TOKEN_COUNTS", "TOKEN_COUNT_SCHEMA", "TOKEN_SOURCES",
           "read_token_counts", "write_token_counts"]

TOKEN_COUNTS = "token_counts.parquet"
SOURCE_SERVER_TOKENIZE = "server_tokenize"  # the server's own POST /tokenize of the answer's text
SOURCE_TOKENIZER = "tokenizer"  # a local tokenizer.json (scenario tokens.tokenizer)
TOKEN_SOURCES = (SOURCE_SERVER_TOKENIZE, SOURCE_TOKENIZER)
TOKEN_COUNT_SCHEMA = pa.schema([("request_id", pa.int64()), ("source", pa.string()), ("count", pa.int64())])


def write_token_counts(run_dir: Path, counts: pd.DataFrame) -> None:
    """`counts` (the file's columns) to the run directory; RunFailed when it cannot be written.
    ValueError for a source not in TOKEN_SOURCES."""
    unknown = set(counts["source"]) - set(TOKEN_SOURCES)
    if unknown:
        raise ValueError(f"unknown token-count sources {sorted(unknown)}")
    table = pa.Table.from_pandas(counts[list(TOKEN_COUNT_SCHEMA.names)], schema=TOKEN_COUNT_SCHEMA,
                                 preserve_index=False)
    path = run_dir / TOKEN_COUNTS
    try:
        pq.write_table(table, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # all or nothing: a reader never sees half the counts
    except (OSError, pa.ArrowException) as exc:
        raise RunFailed(f"{path}: cannot write token counts: {exc}") from None


def read_token_counts(run_dir: Path) -> pd.DataFrame | None:
    """The run's counts (`request_id` int64, `source` string, `count` Int64), None
    when the run has none (or the file cannot be read: the counts are then left out)."""
    try:
        frame = pq.read_table(run_dir / TOKEN_COUNTS).to_pandas()
    except (OSError, pa.ArrowInvalid):
        return None
    return frame.astype({"request_id": "int64", "source": "string", "count": "Int64"})
