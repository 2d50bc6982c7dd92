"""``siamtext export``: write a model folder with an ONNX or OpenVINO copy for fast CPU serving."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export a model to ONNX or OpenVINO (optionally int8) for CPU serving",
        description="Save MODEL to OUTPUT with its transformer exported for ONNX Runtime "
                    "(onnx/model.onnx) or OpenVINO (openvino/openvino_model.xml), and with "
                    "--quantize int8 an int8 copy. Prints the file to pass as --file-name.",
    )
    parser.add_argument("model", metavar="MODEL", help="model folder or Hub id")
    parser.add_argument("output", metavar="OUTPUT", help="folder to write")
    parser.add_argument("--backend", choices=["onnx", "openvino"], default="onnx")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="also write an int8 file (dynamic for onnx, static for openvino)")
    parser.add_argument("--calibration", default=None,
                        help="openvino int8: texts to calibrate on (.txt, or --column of "
                             "csv/tsv/jsonl; default: the bundled demo texts)")
    parser.add_argument("--column", default="text", help="text column of --calibration")
    return parser


def run(args: argparse.Namespace) -> int:
    from siamtext.cli.tabular import column, read_rows
    from siamtext.model import SiamText

    texts = None
    if args.calibration:
        texts = [str(t) for t in column(read_rows(args.calibration), args.column,
                                        args.calibration)]
    model = SiamText(args.model, device="cpu")
    path = model.export(args.backend, path=args.output, quantize=args.quantize,
                        calibration_texts=texts)
    print(path.relative_to(args.output).as_posix() if path.is_relative_to(args.output)
          else path)
    print(f"exported {args.model} -> {args.output} ({args.backend}"
          f"{', int8' if args.quantize else ''})", file=sys.stderr)
    return 0
