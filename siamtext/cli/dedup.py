"""``siamtext dedup FILE``: duplicate pairs and groups in a corpus."""

from __future__ import annotations

import argparse
import sys

from siamtext.cli.backend import add_backend_options, model_kwargs

DEFAULT_THRESHOLD = 0.75


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dedup", help="find duplicate texts in a file",
        description="Find the duplicate pairs and the duplicate groups in FILE (one text per "
                    "line, or a csv/tsv/jsonl column) by cosine similarity of the embeddings. "
                    "FILE may also be an embeddings file written by 'siamtext encode' (.npy, "
                    ".safetensors, .parquet): the corpus is then encoded once and searched "
                    "at any threshold without a model.",
    )
    parser.add_argument("file", help="input: .txt (one text per line), .csv, .tsv or .jsonl; "
                                     "or embeddings: .npy, .safetensors, .parquet")
    parser.add_argument("--texts", default=None,
                        help="with an embeddings FILE: the texts file it was encoded from "
                             "(for the text columns of the output)")
    parser.add_argument("--column", default="text", help="text column of csv/jsonl input")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--detector", default=None,
                        help="folder saved by DuplicateDetector.save (model and threshold)")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"cosine similarity for a duplicate (default: the detector's, else "
                             f"{DEFAULT_THRESHOLD})")
    parser.add_argument("--top-k", type=int, default=0,
                        help="cap on the neighbours kept per text (default 0: no cap, every "
                             "pair above the threshold)")
    parser.add_argument("--method", choices=["exact", "faiss"], default="exact",
                        help="exact tiled search, or a faiss index (IVF, tuned to --recall-target) "
                             "for millions of texts")
    parser.add_argument("--faiss-index", default="auto",
                        help="faiss index_factory string, e.g. IVF4096,Flat, IVF4096,PQ32 or "
                             "HNSW32 (default auto: exact below 20,000 texts, else IVF)")
    parser.add_argument("--recall-target", type=float, default=0.95,
                        help="share of a query sample's exact pairs the faiss search depth is "
                             "tuned to find (default 0.95)")
    parser.add_argument("-o", "--output", default=None,
                        help="pairs file, .csv or .jsonl (default: csv on stdout)")
    parser.add_argument("--groups", default=None, help="groups file, .csv or .jsonl")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.classify.dedup import DuplicateDetector
    from siamtext.classify.threshold import check_similarity_threshold
    from siamtext.cli.tabular import column, read_rows, write_rows
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL

    if args.top_k < 0:
        raise ValueError(f"--top-k must be 0 or more, got {args.top_k}")
    if args.threshold is not None:  # fail before loading a model
        check_similarity_threshold(args.threshold, "--threshold")
    from siamtext.corpus import is_embeddings_file, read_embeddings

    corpus: object
    if is_embeddings_file(args.file):
        corpus = read_embeddings(args.file)
        texts = None
        if args.texts:
            texts = [str(t) for t in column(read_rows(args.texts), args.column, args.texts)]
            if len(texts) != len(corpus):
                raise ValueError(f"--texts {args.texts} has {len(texts)} texts but {args.file} "
                                 f"has {len(corpus)} embeddings")
    else:
        texts = [str(t) for t in column(read_rows(args.file), args.column, args.file)]
        corpus = texts
    if args.detector:
        detector = DuplicateDetector.load(args.detector, **model_kwargs(args))
        detector.batch_size = args.batch_size
    elif texts is corpus or args.model:
        detector = DuplicateDetector(SiamText(args.model or DEFAULT_MODEL, **model_kwargs(args)),
                                     threshold=DEFAULT_THRESHOLD, batch_size=args.batch_size)
    else:  # embeddings alone: no model needed
        detector = DuplicateDetector(None, threshold=DEFAULT_THRESHOLD)
    found = detector.find_duplicates(
        corpus, threshold=args.threshold, top_k=args.top_k or None, method=args.method,
        faiss_index=args.faiss_index, recall_target=args.recall_target,
        show_progress=False if args.no_progress else None,
    )
    fields = ["i", "j", "score"] + (["text_i", "text_j"] if texts is not None else [])
    write_rows(args.output, found.records(texts), fields)
    if args.groups:
        rows = [{"group": g, "size": len(members), "members": " ".join(map(str, members)),
                 "texts": " | ".join(texts[m] for m in members) if texts else ""}
                for g, members in enumerate(found.groups)]
        write_rows(args.groups, rows, ["group", "size", "members", "texts"])
    used = args.threshold if args.threshold is not None else detector.decision_threshold
    print(f"{found.n} texts: {len(found)} duplicate pairs in {len(found.groups)} groups "
          f"(threshold {used:.3f})", file=sys.stderr)
    return 0
