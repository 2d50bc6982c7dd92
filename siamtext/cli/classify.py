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
    parser.add_argument("--predict", help="texts to label: .txt, .csv, .tsv, .jsonl or .parquet, "
                                          "streamed")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--mode", choices=["prototype", "knn", "logistic"], default="prototype",
                        help="logistic: a logistic-regression head, best up to ~1,000 classes")
    parser.add_argument("--n-neighbors", type=int, default=5, help="neighbours for --mode knn")
    parser.add_argument("--C", type=float, default=None, dest="C",
                        help="--mode logistic: inverse regularisation (default: chosen by "
                             "cross-validation, which needs 2 examples per class)")
    parser.add_argument("--class-weight", choices=["balanced", "none"], default="balanced",
                        help="--mode logistic: balanced (default) weighs each class's examples "
                             "inversely to their number; none weighs every example alike")
    parser.add_argument("--threshold", type=float, default=None,
                        help="reject inputs whose best similarity is below this")
    parser.add_argument("--unknown-label", default="unknown", help="label of rejected inputs")
    parser.add_argument("--top-k", type=int, default=1, help="labels written per text")
    parser.add_argument("-o", "--output", default=None,
                        help="predictions, .csv, .tsv or .jsonl: id, text, label, similarity, "
                             "probability (default: csv on stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--chunk-size", type=int, default=10_000,
                        help="texts of --predict read and embedded at a time (memory stays flat)")
    parser.add_argument("--save", default=None, help="save the fitted classifier to a folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.classify.intent import IntentClassifier
    from siamtext.classify.threshold import check_similarity_threshold
    from siamtext.cli.tabular import column, read_rows
    from siamtext.corpus.classify import check_predictions_output, classify_file
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL

    if not args.predict and not args.save:
        raise ValueError("nothing to do: give --predict FILE and/or --save DIR")
    if args.threshold is not None:  # fail before loading a model
        check_similarity_threshold(args.threshold, "--threshold")
    if args.predict:
        check_predictions_output(args.output, args.overwrite)
    if args.train:
        rows = read_rows(args.train)
        if rows and isinstance(rows[0], str):
            raise ValueError(f"--train {args.train}: needs a csv/tsv/jsonl file with "
                             f"{args.text_column!r} and {args.label_column!r} columns")
        texts = [str(t) for t in column(rows, args.text_column, args.train)]
        labels = column(rows, args.label_column, args.train)
        clf = IntentClassifier(
            SiamText(args.model or DEFAULT_MODEL, **model_kwargs(args)), mode=args.mode,
            n_neighbors=args.n_neighbors, C=args.C, threshold=args.threshold,
            class_weight=None if args.class_weight == "none" else args.class_weight,
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
        classify_file(clf, args.predict, args.output, column=args.text_column, top_k=args.top_k,
                      chunk_size=args.chunk_size, overwrite=args.overwrite,
                      show_progress=None)
    return 0
