"""``siamtext demo``: the main job on the bundled model and demo data."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="show siamtext at work on the bundled demo data",
        description="Encode the bundled intent data with the default model (offline), report "
                    "intent accuracy, show similar and dissimilar pairs, then fine-tune and "
                    "report accuracy again.",
    )
    parser.add_argument("--model", default=None,
                        help="model folder or Hub id (default: all-MiniLM-L6-v2, bundled)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--no-fine-tune", dest="fine_tune", action="store_false",
                        help="skip the fine-tuning step")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.demo import run_demo
    from siamtext.model import SiamText
    from siamtext.resolve import DEFAULT_MODEL

    run_demo(SiamText(args.model or DEFAULT_MODEL, device=args.device), fine_tune=args.fine_tune)
    return 0
