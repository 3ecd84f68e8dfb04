"""The versioned on-disk run format: manifest, request and chunk records, their writer and readers.

`bench.store.layout` names the files and their columns, `manifest` is run.json, `journal`
the line-per-record journal, `writer` writes a run directory and `reader` reads its records.
"""

from bench.store.journal import journal_chunks, journal_line, journal_rows
from bench.store.layout import (
    CHUNKS,
    JOURNAL,
    MANIFEST,
    RAW_REQUESTS,
    READABLE_VERSIONS,
    REQUEST_DTYPES,
    REQUESTS,
    SCHEMA_VERSION,
    SERVER_LOG,
    SERVER_METRICS,
    SUMMARY,
)
from bench.store.manifest import (
    ClientInfo,
    ClockOffset,
    CpuUse,
    LoopLag,
    Manifest,
    ProcessLoad,
    PromptTokenModel,
    Provenance,
    RaySetup,
    ScrapeStats,
    ServerInfo,
    WorkerInfo,
    WorkloadInfo,
    read_manifest,
    write_manifest,
)
from bench.store.reader import ChunkSource, JournalReader, chunk_source, frame_batch, read_chunks, read_raw_requests
from bench.store.token_counts import (
    SOURCE_SERVER_TOKENIZE,
    SOURCE_TOKENIZER,
    TOKEN_COUNTS,
    TOKEN_SOURCES,
    read_token_counts,
    write_token_counts,
)
from bench.store.writer import RunWriter

__all__ = [
    "CHUNKS",
    "JOURNAL",
    "MANIFEST",
    "RAW_REQUESTS",
    "READABLE_VERSIONS",
    "REQUESTS",
    "REQUEST_DTYPES",
    "SCHEMA_VERSION",
    "SERVER_LOG",
    "SERVER_METRICS",
    "SOURCE_SERVER_TOKENIZE",
    "SOURCE_TOKENIZER",
    "SUMMARY",
    "TOKEN_COUNTS",
    "TOKEN_SOURCES",
    "ChunkSource",
    "ClientInfo",
    "ClockOffset",
    "CpuUse",
    "JournalReader",
    "LoopLag",
    "Manifest",
    "ProcessLoad",
    "PromptTokenModel",
    "Provenance",
    "RaySetup",
    "RunWriter",
    "ScrapeStats",
    "ServerInfo",
    "WorkerInfo",
    "WorkloadInfo",
    "chunk_source",
    "frame_batch",
    "journal_chunks",
    "journal_line",
    "journal_rows",
    "read_chunks",
    "read_manifest",
    "read_raw_requests",
    "read_token_counts",
    "write_manifest",
    "write_token_counts",
]
