"""Scenario files: the schema, prompt sources (inline, JSONL, datasets) and load traces. First in the pipeline."""
