"""The ``siamtext`` command: argparse subcommands, one module each, thin over the library."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand -> module under siamtext.cli that defines `add_parser(subparsers)` and `run(args)`
SUBCOMMANDS = {
    "demo": "demo",
    "push": "push",
    "train": "train",
    "evaluate": "evaluate",
    "dedup": "dedup",
    "classify": "classify",
    "encode": "encode",
    "export": "export",
    "serve": "serve",
    "index": "index",
    "distill": "distill",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    from siamtext import __version__

    parser = argparse.ArgumentParser(
        prog="siamtext", description="Siamese transformer networks for text similarity."
    )
    parser.add_argument("--version", action="version", version=f"siamtext {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"siamtext.cli.{module_name}")
        sp = module.add_parser(sub)
        sp.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``siamtext`` command. Returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ok = False
    try:
        status = int(args._run(args) or 0)
        ok = True
        return status
    except (ValueError, TypeError, OSError, ImportError) as err:  # a missing extra is named
        print(f"siamtext {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        _leave_process_group(wait=ok)


def _leave_process_group(wait: bool) -> None:
    """Destroy the process group a command ran in under ``torchrun`` / ``accelerate launch``
    (a gloo group left to the interpreter's exit can abort the process)."""
    if "torch.distributed" in sys.modules:  # never import torch for a command that did not
        from siamtext import distributed

        distributed.shutdown(wait=wait)
