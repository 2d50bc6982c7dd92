"""``siamtext train``: fine-tune a model on a Hub dataset or a local csv/tsv/jsonl/parquet file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json",
                 ".parquet": "parquet"}
BUILDERS = ("pairs", "triplets", "hard-triplets", "anchor-positives")


def load_source(source: str, split: str = "train", config: str | None = None,
                max_rows: int | None = None) -> Any:
    """A ``datasets.Dataset`` from a local csv/tsv/jsonl/parquet file or a Hub dataset name.

    Raises:
        ValueError: For a local file of another format, or a split the dataset lacks.
    """
    import datasets

    path = Path(source)
    if path.exists():
        fmt = LOCAL_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{source}: unsupported file type {path.suffix!r}; expected one of "
                             f"{sorted(LOCAL_FORMATS)}")
        kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
        data = datasets.load_dataset(fmt, data_files=str(path), split="train", **kwargs)
    else:
        try:
            data = datasets.load_dataset(source, config, split=split)
        except ValueError as err:
            raise ValueError(f"{source}: cannot load split {split!r}: {err}") from err
    if max_rows is not None and max_rows < len(data):
        data = data.select(range(max_rows))
    return data


def parse_pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values read as JSON when they parse).

    Raises:
        ValueError: For an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must look like key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_rows(data: Any, how: str, columns: dict[str, str], seed: int,
               model: Any = None) -> Any:
    """Turn (text, label) rows into pairs, triplets or (anchor, positive) rows."""
    from siamtext.data import make_anchor_positives, make_pairs, make_triplets
    from siamtext.data.prepare import check_columns

    text, label = columns.pop("text", "text"), columns.pop("label", "label")
    check_columns(data.column_names, [text, label], "data")
    texts, labels = list(data[text]), list(data[label])
    if how == "pairs":
        return make_pairs(texts, labels, max_pairs=max(2, 4 * len(texts)), seed=seed)
    if how == "triplets":
        return make_triplets(texts, labels, seed=seed)
    if how == "hard-triplets":
        return make_triplets(texts, labels, seed=seed, model=model)
    return make_anchor_positives(texts, labels, seed=seed)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="fine-tune a model with a siamtext loss",
        description="Fine-tune a model on a Hugging Face dataset or a local csv/tsv/jsonl/"
                    "parquet file and save it. Columns follow the loss: sentence1, sentence2, "
                    "label (pair losses, CoSENT); anchor, positive[, negative][, label] "
                    "(triplet, in-batch negatives); text, label (batch-mining triplet losses, "
                    "SupervisedContrastiveLoss). "
                    "Rename with --column, or build rows from (text, label) data with --build.",
    )
    parser.add_argument("data", help="local file (.csv .tsv .jsonl .parquet) or Hub dataset name")
    parser.add_argument("--output-dir", required=True, help="where the trained model is saved")
    parser.add_argument("--loss", default="MultipleNegativesRankingLoss",
                        help="loss name, e.g. CoSENTLoss, BatchHardTripletLoss, "
                             "MultipleNegativesRankingLoss (default), ContrastiveLoss")
    parser.add_argument("--loss-param", action="append", metavar="KEY=VALUE",
                        help="loss parameter, repeatable (e.g. --loss-param margin=0.5)")
    parser.add_argument("--column", action="append", metavar="DEFAULT=ACTUAL",
                        help="column name mapping, repeatable (e.g. --column "
                             "sentence1=question1 --column label=is_duplicate)")
    parser.add_argument("--build", choices=BUILDERS, default=None,
                        help="build rows from (text, label) data first")
    parser.add_argument("--split", default="train", help="Hub dataset split (default: train)")
    parser.add_argument("--config", default=None, help="Hub dataset configuration")
    parser.add_argument("--eval-data", default=None,
                        help="file or Hub dataset for an eval loss (same columns)")
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--max-rows", type=int, default=None, help="use the first N rows")
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="rows per batch on each process (global batch = this x the "
                             "number of torchrun / accelerate processes)")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak learning rate")
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up share of the steps")
    parser.add_argument("--gradient-accumulation", type=int, default=1)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--samples-per-class", type=int, default=None,
                        help="K of class-balanced P x K batches ((text, label) losses; "
                             "default: the loss's, 4 for triplet mining, 2 for "
                             "SupervisedContrastiveLoss)")
    parser.add_argument("--checkpoint-steps", type=int, default=None,
                        help="save a checkpoint every N steps (default: each epoch)")
    parser.add_argument("--resume", default=None,
                        help="checkpoint folder to resume from, or 'latest': the latest "
                             "complete checkpoint in OUTPUT_DIR/checkpoints, or a fresh start "
                             "when there is none yet (so a scheduler can rerun the same "
                             "command after a crash)")
    parser.add_argument("--nan-policy", choices=("raise", "skip"), default="raise",
                        help="a NaN or inf loss or gradient: stop with an error naming the "
                             "step and the last good checkpoint (raise, default), or skip "
                             "that step's update (skip)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext import distributed
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL
    from siamtext.training import NonFiniteError, fit, latest_checkpoint
    from siamtext.training.arguments import CHECKPOINTING_ARGUMENT

    if args.max_rows is not None and args.max_rows <= 0:
        raise ValueError(f"--max-rows must be a positive integer, got {args.max_rows}")
    columns = parse_pairs(args.column, "--column")
    loss_params = parse_pairs(args.loss_param, "--loss-param")
    model = SiamText(args.model or DEFAULT_MODEL, device=args.device)
    data = load_source(args.data, args.split, args.config, args.max_rows)
    eval_data = None
    if args.eval_data:
        eval_data = load_source(args.eval_data, args.eval_split, args.config)
    if args.build:
        data = build_rows(data, args.build, dict(columns), args.seed, model)
        if eval_data is not None:
            eval_data = build_rows(eval_data, args.build, dict(columns), args.seed, model)
        columns = {k: v for k, v in columns.items() if k not in ("text", "label")}
    output = Path(args.output_dir)
    resume = args.resume
    if resume == "latest":
        resume = latest_checkpoint(output / "checkpoints")
        if resume is None and distributed.is_main_process():
            print(f"No complete checkpoint in {output / 'checkpoints'} yet: starting from "
                  "the beginning.", file=sys.stderr)
    extra: dict[str, Any] = {"gradient_accumulation_steps": args.gradient_accumulation,
                             "samples_per_class": args.samples_per_class,
                             "nan_policy": args.nan_policy}
    if args.gradient_checkpointing:
        extra[CHECKPOINTING_ARGUMENT] = True
    if args.checkpoint_steps:
        extra.update(save_strategy="steps", save_steps=args.checkpoint_steps)
    try:
        fit(model, data, args.loss, loss_params=loss_params, eval_dataset=eval_data,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
            warmup_ratio=args.warmup, output_dir=str(output / "checkpoints"), columns=columns,
            resume_from_checkpoint=resume, show_progress=not args.no_progress, seed=args.seed,
            **extra)
    except NonFiniteError as err:
        print(f"siamtext train: error: {err}", file=sys.stderr)
        return 3
    model.save_pretrained(output)  # rank 0 only under torchrun / accelerate launch
    if not distributed.is_main_process():
        return 0
    card = model.card_data
    print(f"Trained {card.training['loss']} on {card.training['rows']} rows for "
          f"{card.training['epochs']:g} epoch(s), {card.training['steps']} steps; "
          f"train loss {card.training['train_loss']:.4f}")
    for name, value in card.eval_metrics.items():
        print(f"{name}: {value:.4f}")
    print(f"Saved to {output}")
    return 0
