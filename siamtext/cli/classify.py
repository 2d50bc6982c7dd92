"""``siamtext classify``: fit an intent classifier on a labelled file and predict another."""

from __future__ import annotations

import argparse
import sys

from siamtext.cli.backend import add_backend_options, model_kwargs


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "classify", help="fit an intent classifier from labelled examples and predict texts",
        description="Fit an IntentClassifier on --train (csv/tsv/jsonl with text and label "
                    "columns) or load one with --load, then label the texts of --predict.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", help="labelled examples: .csv, .tsv or .jsonl")
    src.add_argument("--load", help="folder saved by IntentClassifier.save")
    parser.add_argument("--predict", help="texts to label: .txt, .csv, .tsv or .jsonl")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--mode", choices=["prototype", "knn"], default="prototype")
    parser.add_argument("--n-neighbors", type=int, default=5, help="neighbours for --mode knn")
    parser.add_argument("--threshold", type=float, default=None,
                        help="reject inputs whose best similarity is below this")
    parser.add_argument("--unknown-label", default="unknown", help="label of rejected inputs")
    parser.add_argument("--top-k", type=int, default=1, help="labels written per text")
    parser.add_argument("-o", "--output", default=None,
                        help="predictions, .csv or .jsonl (default: csv on stdout)")
    parser.add_argument("--save", default=None, help="save the fitted classifier to a folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.classify.intent import IntentClassifier
    from siamtext.classify.threshold import check_similarity_threshold
    from siamtext.cli.tabular import column, read_rows, write_rows
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL

    if not args.predict and not args.save:
        raise ValueError("nothing to do: give --predict FILE and/or --save DIR")
    if args.threshold is not None:  # fail before loading a model
        check_similarity_threshold(args.threshold, "--threshold")
    if args.train:
        rows = read_rows(args.train)
        if rows and isinstance(rows[0], str):
            raise ValueError(f"--train {args.train}: needs a csv/tsv/jsonl file with "
                             f"{args.text_column!r} and {args.label_column!r} columns")
        texts = [str(t) for t in column(rows, args.text_column, args.train)]
        labels = column(rows, args.label_column, args.train)
        clf = IntentClassifier(
            SiamText(args.model or DEFAULT_MODEL, **model_kwargs(args)), mode=args.mode,
            n_neighbors=args.n_neighbors, threshold=args.threshold,
            unknown_label=args.unknown_label, batch_size=args.batch_size,
        ).fit(texts, labels)
        print(f"fitted {len(clf.classes_)} classes from {len(texts)} examples", file=sys.stderr)
    else:
        clf = IntentClassifier.load(args.load, **model_kwargs(args))
        if args.threshold is not None:
            clf.set_params(threshold=args.threshold)
            clf.__dict__.pop("threshold_", None)
    if args.save:
        print(f"saved to {clf.save(args.save)}", file=sys.stderr)
    if args.predict:
        queries = [str(t) for t in column(read_rows(args.predict), args.text_column, args.predict)]
        pred = clf.predict(queries).tolist()
        sims = clf.similarity(queries).tolist()
        top, proba = clf.top_k(queries, k=args.top_k)
        rows = []
        for i, text in enumerate(queries):
            row = {"text": text, "label": pred[i], "similarity": round(sims[i], 6),
                   "probability": round(float(proba[i, 0]), 6)}
            if args.top_k > 1:
                row["top_k"] = " ".join(f"{lab}:{p:.4f}" for lab, p in zip(top[i], proba[i]))
            rows.append(row)
        fields = ["text", "label", "similarity", "probability"] + (
            ["top_k"] if args.top_k > 1 else [])
        write_rows(args.output, rows, fields)
    return 0
