"""``siamtext distill TEACHER CORPUS -o STUDENT --layers 3``: a layer-reduced student of a model,
trained on the texts of a corpus to give the teacher's embeddings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_layers(value: str) -> int | list[int]:
    """``"3"`` -> 3 (a count); ``"0,2,5"`` -> [0, 2, 5] (indices).

    Raises:
        ValueError: For anything else, naming ``--layers``.
    """
    parts = [p.strip() for p in value.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--layers must be a count (3) or comma-separated layer indices "
                         f"(0,2,5), got {value!r}") from None
    return numbers[0] if len(parts) == 1 else numbers


def parse_eval_size(value: str) -> float | int:
    """``"0.1"`` -> 0.1 (a share); ``"500"`` -> 500 (a count)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--eval-size must be a share in (0, 1) or a count of texts, got "
                         f"{value!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "distill", help="distil a model into one with fewer transformer layers, on a corpus",
        description="Build a student of TEACHER that keeps --layers of its transformer layers "
                    "(a count spread evenly, or indices), train it to give TEACHER's "
                    "embeddings of the texts of CORPUS (read like siamtext encode reads its "
                    "input) and save it to OUTPUT. A held-out slice reports the "
                    "teacher-student cosine before training and after each epoch. "
                    "Checkpoints go to OUTPUT/checkpoints.",
    )
    parser.add_argument("teacher", metavar="TEACHER", help="model folder or Hub id")
    parser.add_argument("corpus", metavar="CORPUS",
                        help=".txt (one text per line), .csv, .tsv, .jsonl or .parquet, or a "
                             "Hub dataset id (streamed)")
    parser.add_argument("-o", "--output", required=True, help="folder to save the student to")
    parser.add_argument("--layers", type=str, default="3",
                        help="layers to keep: a count (3) or the teacher's layer indices "
                             "(0,2,5); default 3")
    parser.add_argument("--column", default="text",
                        help="text column of csv/tsv/jsonl/parquet input (default: text)")
    parser.add_argument("--split", default="train", help="split of a Hub dataset")
    parser.add_argument("--config", default=None, help="configuration of a Hub dataset")
    parser.add_argument("--max-texts", type=int, default=None, help="use the first N texts")
    parser.add_argument("--loss", choices=("mse", "cosine"), default="mse")
    parser.add_argument("--dims", type=int, default=None,
                        help="a smaller output width: a PCA-initialised projection after "
                             "pooling (load the student with "
                             "siamtext.training.projection.ProjectedSiamText)")
    parser.add_argument("--eval-size", default="0.1",
                        help="held-out slice: a share (0.1, default) or a count of texts")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak learning rate")
    parser.add_argument("--max-time", type=float, default=None,
                        help="stop training after this many seconds")
    parser.add_argument("--resume", default=None,
                        help="checkpoint folder to resume from, or 'latest' (the latest "
                             "complete one in OUTPUT/checkpoints; a fresh start when none)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from siamtext import distributed
    from siamtext.corpus import open_source
    from siamtext.model import SiamText
    from siamtext.training import latest_checkpoint
    from siamtext.training.distill import distill
    from siamtext.validation import check_positive_int

    # fail before loading anything
    layers = parse_layers(args.layers)
    eval_size = parse_eval_size(args.eval_size)
    check_positive_int(args.batch_size, "--batch-size")
    if args.max_texts is not None:
        check_positive_int(args.max_texts, "--max-texts")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a file; give a folder")
    source = open_source(args.corpus, args.column, args.split, args.config)

    teacher = SiamText(args.teacher, device=args.device)
    texts = list(islice(iter(source), args.max_texts))
    resume = args.resume
    if resume == "latest":
        resume = latest_checkpoint(output / "checkpoints")
        if resume is None and distributed.is_main_process():
            print(f"No complete checkpoint in {output / 'checkpoints'} yet: starting from the "
                  "beginning.", file=sys.stderr)
    # errors name the Python argument (layers=7, eval_size=0.1): the option of the same name
    student = distill(teacher, texts, layers, loss=args.loss, dims=args.dims,
                      eval_size=eval_size,
                      epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                      max_time=args.max_time, output_dir=str(output / "checkpoints"),
                      resume_from_checkpoint=resume, show_progress=not args.no_progress,
                      seed=args.seed)
    student.save_pretrained(output)
    if not distributed.is_main_process():
        return 0
    info = student.card_data.training["distillation"]
    first, last = info["history"][0], info["history"][-1]
    print(f"Distilled {info['teacher_layers']} -> {len(info['layers'])} layers "
          f"{info['layers']} on {info['texts']} texts, {student.card_data.training['steps']} "
          f"steps; held-out teacher-student cosine {first['teacher_cosine']:.4f} -> "
          f"{last['teacher_cosine']:.4f} ({info['held_out']} texts); "
          f"{info['dims']} dimensions")
    print(f"Saved to {output}")
    return 0
