"""Embed corpora too big for memory: lazy readers, chunked encoding, resumable writers.

``encode_file(model, "corpus.txt", "emb.npy")`` reads a txt/csv/tsv/jsonl/parquet file (or
streams a Hub dataset) lazily, embeds it ``chunk_size`` texts at a time and writes ``.npy``,
``.safetensors`` or ``.parquet``; an interrupted run resumes where it stopped.
``classify_file(classifier, "texts.txt", "pred.csv")`` labels a file of any length the same
way, one chunk at a time.
"""

from __future__ import annotations

from siamtext.corpus.classify import classify_file
from siamtext.corpus.embeddings import is_embeddings_file, read_embeddings
from siamtext.corpus.encode import check_output, encode_file, parse_shard, shard_rows
from siamtext.corpus.readers import INPUT_FORMATS, HubSource, TextSource, open_source
from siamtext.corpus.writers import DTYPES, OUTPUT_FORMATS

__all__ = ["DTYPES", "INPUT_FORMATS", "OUTPUT_FORMATS", "HubSource", "TextSource",
           "check_output", "classify_file", "encode_file", "is_embeddings_file", "open_source",
           "parse_shard", "read_embeddings", "shard_rows"]
