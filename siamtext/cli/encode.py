"""``siamtext encode INPUT -o OUTPUT``: embed a corpus into a file, streaming and resumable."""

from __future__ import annotations

import argparse
import sys

from siamtext.cli.backend import add_backend_options, model_kwargs


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "encode", help="embed a text file into an embedding file",
        description="Embed every text of INPUT into OUTPUT, CHUNK_SIZE texts at a time, so "
                    "memory does not grow with the corpus. Rows keep the input's order; empty "
                    "or null texts are embedded as ''. An interrupted run, started again with "
                    "the same arguments, resumes where it stopped.",
    )
    parser.add_argument("input", help="input: .txt (one text per line), .csv, .tsv, .jsonl "
                                      "or .parquet, or a Hub dataset id (streamed)")
    parser.add_argument("-o", "--output", required=True,
                        help="output: .npy, .safetensors (tensor 'embeddings') or .parquet "
                             "(columns id, embedding)")
    parser.add_argument("--column", default="text",
                        help="text column of csv/tsv/jsonl/parquet input (default: text)")
    parser.add_argument("--split", default="train", help="split of a Hub dataset")
    parser.add_argument("--config", default=None, help="configuration of a Hub dataset")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=10_000,
                        help="texts read, embedded and written at a time (default 10000)")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                        help="stored precision (float16 halves the file)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="embed only the I-th of N contiguous shards (0-based)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT and discard partial work of a run "
                             "with other settings")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.corpus import check_output, encode_file, open_source, parse_shard
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL
    from siamtext.validation import check_positive_int

    # fail before loading a model
    check_positive_int(args.batch_size, "--batch-size")
    check_positive_int(args.chunk_size, "--chunk-size")
    parse_shard(args.shard)
    check_output(args.output, args.overwrite)
    open_source(args.input, args.column, args.split, args.config)

    model = SiamText(args.model or DEFAULT_MODEL, **model_kwargs(args))
    path = encode_file(model, args.input, args.output, column=args.column, split=args.split,
                       config=args.config,
                       batch_size=args.batch_size, chunk_size=args.chunk_size, dtype=args.dtype,
                       shard=args.shard, overwrite=args.overwrite,
                       show_progress=False if args.no_progress else None)
    print(f"{args.input} -> {path} ({args.dtype}"
          f"{', shard ' + args.shard if args.shard else ''})", file=sys.stderr)
    return 0
