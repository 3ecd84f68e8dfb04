"""The run directory's files and their column layouts (the format, version SCHEMA_VERSION).

A run directory holds:
- `run.json`: manifest (schema version, resolved scenario without secrets, target, times,
  how the run ended). Written at start with `ended: "running"`, rewritten at the end.
- `requests.jsonl`: the journal, one raw record per line, flushed as requests finish, so a
  crash or `kill -9` loses at most the records being written. Chunk columns are base64 of
  their little-endian bytes (`t` float64, `kind` int8, `tokens` and `choice` int32), or a
  single number when every entry has that value (`"tokens": -1`, `"choice": 0`).
- `chunks.parquet`: one row per SSE event, or per choice of a multi-choice event
  (`request_id, t_s, kind, tokens, choice`), and `raw_requests.parquet`: the journal's
  scalar fields, one row per record; both written in row groups during the run and readable
  once closed. When either is missing or cut short (a killed run), readers rebuild it from
  the journal.
- `requests.parquet` and `summary.json`: written at the end from the raw data (by the
  finalize step, which owns the metric definitions).

The store knows nothing about metrics.
"""

from __future__ import annotations

import pyarrow as pa

from bench.records import CHUNK_KINDS, SCALAR_FIELDS

__all__ = [
    "BATCH_RECORDS", "CHUNKS", "CHUNK_SCHEMA", "JOURNAL", "KIND_DICTIONARY", "MANIFEST", "RAW_COLUMNS", "RAW_REQUESTS",
    "RAW_SCHEMA", "READABLE_VERSIONS", "REQUESTS", "REQUEST_DTYPES", "SCHEMA_VERSION", "SERVER_LOG",
    "SERVER_METRICS", "SUMMARY",
]

SCHEMA_VERSION = 6
# Version 3 added chunk kinds (tool_call, function_call, refusal) after the old codes, so a
# version 2 run reads unchanged; its records keep the error kinds of their day (no_done).
# Version 4 added run.json `provenance` (absent, read as None, in versions 2 and 3); a bench
# of version 3 refuses a version 4 run by its number, not by the unknown key.
# Version 5 added the request columns `inputs` and `body_s` (non-streamed answers: embeddings),
# read as null in earlier versions, whose runs were all streamed. The request column `model`
# (the model each request named) came later within version 5: absent, it is read as null
# (the readers fill columns added after a run's version), so it needed no new version.
# Version 6 added the request column `output_texts` (each choice's generated text, kept when
# the scenario counts tokens; read as null before), the files `token_counts.parquet` (counts
# made after the run; absent: none made) and finalize's `derived.json`, `itl_values.npy`,
# `itl_blocks.npy` (absent: report and compare read the chunks), and summary.json
# `precision.reruns` (absent: no re-run ranges). Earlier versions read unchanged; a bench of
# version 5 refuses a version 6 run by its number rather than ignoring what it cannot read.
READABLE_VERSIONS = (2, 3, 4, 5, 6)
MANIFEST = "run.json"
JOURNAL = "requests.jsonl"
CHUNKS = "chunks.parquet"
RAW_REQUESTS = "raw_requests.parquet"
REQUESTS = "requests.parquet"
SUMMARY = "summary.json"
SERVER_METRICS = "server_metrics.parquet"
SERVER_LOG = "server.log"

# Records per batch: the writer's parquet batch, the journal reader's chunk batch.
BATCH_RECORDS = 512

CHUNK_SCHEMA = pa.schema([
    ("request_id", pa.int64()),
    ("t_s", pa.float64()),
    ("kind", pa.dictionary(pa.int8(), pa.string())),
    ("tokens", pa.int32()),
    ("choice", pa.int32()),
])
KIND_DICTIONARY = pa.array(CHUNK_KINDS, type=pa.string())

# Stable column types whatever the journal holds (all-null columns included).
REQUEST_DTYPES = {
    "request_id": "int64", "stage": "int64", "phase": "string", "variant": "string",
    "block": "int64", "conversation": "int64", "turn": "int64", "prompt_index": "int64", "scheduled_s": "float64",
    "submitted_s": "float64", "sent_s": "float64", "headers_s": "float64",
    "end_s": "float64", "status": "string", "error_kind": "string", "error_message": "string",
    "http_status": "Int64", "retry_after_s": "float64", "finish_reason": "string",
    "usage_prompt_tokens": "Int64", "usage_completion_tokens": "Int64", "server_request_id": "string",
    "max_tokens": "Int64", "n": "int64", "done_seen": "bool", "reconnected": "bool", "output_chars": "int64",
    "inputs": "Int64", "body_s": "float64",
    "usage_reasoning_tokens": "Int64", "usage_cached_tokens": "Int64",
    "model": "string",
    "output_texts": "object",
}
_ARROW_TYPES = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
                "bool": pa.bool_(), "object": pa.list_(pa.string())}
RAW_COLUMNS = tuple(name for name in SCALAR_FIELDS if name != "server_timings")
if set(RAW_COLUMNS) - set(REQUEST_DTYPES):  # raw_requests.parquet needs each column's type
    raise ImportError(f"RequestRecord fields without a column type in store.REQUEST_DTYPES: "
                      f"{sorted(set(RAW_COLUMNS) - set(REQUEST_DTYPES))}")
# server_timings as a JSON string: its keys are the server's, not ours
RAW_SCHEMA = pa.schema([(name, _ARROW_TYPES[REQUEST_DTYPES[name]]) for name in RAW_COLUMNS]
                       + [("server_timings", pa.string())])
