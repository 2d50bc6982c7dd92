"""``siamtext evaluate``: STS correlation, pair classification or intent accuracy of a model."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from siamtext.cli.backend import add_backend_options, model_kwargs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from siamtext.model import SiamText

TASKS = ("sts", "pairs", "intent")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a model on STS, pair classification or intents",
        description="sts: Spearman/Pearson of cosine similarity with gold scores (columns "
                    "sentence1, sentence2, score). pairs: accuracy, F1 and average precision "
                    "of duplicate detection (sentence1, sentence2, label 0/1), thresholds "
                    "fitted on --fit-data, never on the reported data. intent: accuracy by "
                    "nearest prototype and k-NN (text, label), references from --train-data.",
    )
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("data", help="local file (.csv .tsv .jsonl .parquet) or Hub dataset name")
    parser.add_argument("--split", default="test", help="Hub dataset split (default: test)")
    parser.add_argument("--config", default=None, help="Hub dataset configuration")
    parser.add_argument("--fit-data", default=None,
                        help="pairs: data to fit the thresholds on (a separate split)")
    parser.add_argument("--fit-split", default="validation")
    parser.add_argument("--train-data", default=None,
                        help="intent: labelled reference texts (prototypes, neighbours)")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--column", action="append", metavar="DEFAULT=ACTUAL",
                        help="column name mapping, repeatable (e.g. --column label=category)")
    parser.add_argument("--k", type=int, default=1, help="intent: neighbours for k-NN")
    parser.add_argument("--max-rows", type=int, default=None, help="use the first N rows")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    add_backend_options(parser)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="also write a figure (.png, .svg, .pdf; needs siamtext[plot]); "
                             "sts: predicted similarity against gold score; pairs: similarity "
                             "histograms and precision-recall curve at the F1 threshold; "
                             "intent: the most confused intent pairs (nearest prototype). "
                             "The reported data is encoded once more for it")
    return parser


def _columns(data: object, names: list[str], mapping: dict[str, str], what: str) -> list[list]:
    from siamtext.data.prepare import check_columns

    actual = [mapping.get(n, n) for n in names]
    check_columns(data.column_names, actual, what)
    return [list(data[c]) for c in actual]


def run(args: argparse.Namespace) -> int:
    from siamtext.cli.train import load_source, parse_pairs
    from siamtext.evaluation import IntentEvaluator, PairClassificationEvaluator, STSEvaluator
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL

    if args.max_rows is not None and args.max_rows <= 0:
        raise ValueError(f"--max-rows must be a positive integer, got {args.max_rows}")
    mapping = parse_pairs(args.column, "--column")
    if args.task == "pairs" and not args.fit_data:
        raise ValueError("pairs needs --fit-data: the split the decision threshold is fitted "
                         "on (never the reported one)")
    if args.task == "intent" and not args.train_data:
        raise ValueError("intent needs --train-data: labelled reference texts")
    if args.plot:
        from siamtext.plot import require_matplotlib

        if not Path(args.plot).resolve().parent.is_dir():
            raise ValueError(f"--plot: folder {Path(args.plot).parent} does not exist")
        require_matplotlib("--plot")  # before any data is read
    data = load_source(args.data, args.split, args.config, args.max_rows)
    if args.task == "sts":
        s1, s2, scores = _columns(data, ["sentence1", "sentence2", "score"], mapping, "data")
        scores = [float(s) for s in scores]
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        if bad:
            raise ValueError(f"data: score of row {bad[0]} is {scores[bad[0]]}; scores must "
                             "be finite numbers")
        evaluator = STSEvaluator(s1, s2, scores, batch_size=args.batch_size)
    elif args.task == "pairs":
        fit = load_source(args.fit_data, args.fit_split, args.config)
        names = ["sentence1", "sentence2", "label"]
        fit_cols = _columns(fit, names, mapping, "fit data")
        eval_cols = _columns(data, names, mapping, "data")
        fit_cols[2] = [int(v) for v in fit_cols[2]]
        eval_cols[2] = [int(v) for v in eval_cols[2]]
        evaluator = PairClassificationEvaluator(tuple(fit_cols), tuple(eval_cols),
                                                batch_size=args.batch_size)
    else:
        train = load_source(args.train_data, args.train_split, args.config)
        tx, ty = _columns(train, ["text", "label"], mapping, "train data")
        x, y = _columns(data, ["text", "label"], mapping, "data")
        evaluator = IntentEvaluator(tx, ty, x, y, k=args.k, batch_size=args.batch_size)
    model = SiamText(args.model or DEFAULT_MODEL, **model_kwargs(args))
    metrics = evaluator(model)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for name, value in metrics.items():
            print(f"{name}: {value:.4f}")
    if args.plot:
        _figure(args, model, evaluator, metrics).savefig(args.plot)
        print(f"figure written to {args.plot}", file=sys.stderr)
    return 0


def _figure(args: argparse.Namespace, model: SiamText, evaluator: object,
            metrics: dict[str, float]) -> Figure:
    """The ``--plot`` figure of the task (the reported data is encoded again)."""
    from siamtext import plot
    from siamtext.classify import IntentClassifier
    from siamtext.classify.threshold import encode_pair_scores

    if args.task == "intent":
        clf = IntentClassifier(model, batch_size=args.batch_size)
        clf.fit(evaluator.train_texts, evaluator.train_labels)
        return clf.plot_confusions(evaluator.test_texts, evaluator.test_labels)
    if args.task == "sts":
        sims = encode_pair_scores(model, evaluator.sentences1, evaluator.sentences2,
                                  args.batch_size)
        return plot.sts_figure(sims, evaluator.scores)
    s1, s2, labels = evaluator.eval_pairs
    sims = encode_pair_scores(model, list(s1), list(s2), args.batch_size)
    return plot.threshold_figure(sims, labels, metrics["pairs_f1_threshold"], classes=(0, 1),
                                 title="Pairs: F1 threshold fitted on --fit-data")
