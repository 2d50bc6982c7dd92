"""``--backend`` and ``--file-name``: the inference engine of the commands that encode."""

from __future__ import annotations

import argparse


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` and ``--file-name`` to a subcommand's parser."""
    parser.add_argument("--backend", choices=["torch", "onnx", "openvino"], default="torch",
                        help="inference engine: torch, or an exported model run with ONNX "
                             "Runtime or OpenVINO on CPU (extras siamtext[onnx], "
                             "siamtext[openvino])")
    parser.add_argument("--file-name", default=None,
                        help="exported file to run, e.g. model_qint8_avx2.onnx or "
                             "openvino_model_qint8_quantized.xml (default: the fp32 file)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """``SiamText`` keyword arguments from ``--device``, ``--backend`` and ``--file-name``."""
    kwargs: dict = {"device": args.device}
    if args.backend != "torch":
        kwargs.update(backend=args.backend, file_name=args.file_name)
    elif args.file_name is not None:
        raise ValueError("--file-name selects an exported file: pass --backend onnx or "
                         "--backend openvino with it")
    return kwargs
