"""sentence-transformers' own back ends, run in the peer venv (``make peer-venv``).

Called by ``benchmarks/encode_speed.py`` in a subprocess, because sentence-transformers'
onnx/openvino back ends need optimum (transformers < 4.58), which cannot share siamtext's
venv. For each variant (torch fp32, ONNX fp32, ONNX dynamic int8 for this CPU, OpenVINO fp32,
OpenVINO static int8) it times ``encode`` of the speed texts (alternating, median of the
repeats) and saves the embeddings of the speed and quality texts, so that the caller scores
every library's variants with the same code.

    python st_backends.py MODEL_DIR WORK_DIR --repeats 3 --batch-size 32

WORK_DIR holds ``speed.json`` and ``quality.json`` (lists of texts); the script writes
``st-<variant>-{speed,quality}.npy`` there and prints one JSON line with the timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def variants(model_dir: str, work: Path, calibration: list[str]) -> dict:
    """Name -> a loaded SentenceTransformer; a variant that cannot be built is reported."""
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    out: dict = {}
    errors: dict = {}
    out["torch fp32"] = SentenceTransformer(model_dir, device="cpu")
    onnx_dir, ov_dir = work / "st-onnx", work / "st-openvino"
    try:
        onnx = SentenceTransformer(model_dir, backend="onnx", device="cpu")
        onnx.save_pretrained(str(onnx_dir))
        out["onnx fp32"] = onnx
        from sentence_transformers import export_dynamic_quantized_onnx_model

        isa = _isa()
        export_dynamic_quantized_onnx_model(onnx, isa, str(onnx_dir))
        name = next(p.name for p in (onnx_dir / "onnx").glob(f"model_*{isa}.onnx"))
        out[f"onnx int8 ({name})"] = SentenceTransformer(
            str(onnx_dir), backend="onnx", device="cpu", model_kwargs={"file_name": name})
    except Exception as err:  # noqa: BLE001 - reported, not hidden
        errors["onnx"] = f"{type(err).__name__}: {err}"
    try:
        ov = SentenceTransformer(model_dir, backend="openvino", device="cpu")
        ov.save_pretrained(str(ov_dir))
        out["openvino fp32"] = ov
        from optimum.intel import OVQuantizationConfig
        from sentence_transformers import export_static_quantized_openvino_model

        calib = work / "calibration"
        calib.mkdir(exist_ok=True)
        (calib / "train.jsonl").write_text(
            "".join(json.dumps({"text": t}) + "\n" for t in calibration), encoding="utf-8")
        # the export quantises the model it is given in place: give it a copy, so that the
        # fp32 row stays fp32 (a run that passed `ov` itself timed int8 twice)
        to_quantize = SentenceTransformer(str(ov_dir), backend="openvino", device="cpu")
        export_static_quantized_openvino_model(
            to_quantize, OVQuantizationConfig(num_samples=len(calibration)), str(ov_dir),
            dataset_name=str(calib), dataset_config_name="default", dataset_split="train",
            column_name="text")
        name = next(p.name for p in (ov_dir / "openvino").glob("*qint8*.xml"))
        out[f"openvino int8 ({name})"] = SentenceTransformer(
            str(ov_dir), backend="openvino", device="cpu", model_kwargs={"file_name": name})
    except Exception as err:  # noqa: BLE001
        errors["openvino"] = f"{type(err).__name__}: {err}"
    return {"models": out, "errors": errors, "version": sentence_transformers.__version__}


def _isa() -> str:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("work")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    work = Path(args.work)
    speed = json.loads((work / "speed.json").read_text())
    quality = json.loads((work / "quality.json").read_text())
    built = variants(args.model_dir, work, quality[:300])
    models = built["models"]
    for model in models.values():
        model.encode(speed[:256], batch_size=args.batch_size)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            emb = model.encode(speed, batch_size=args.batch_size, show_progress_bar=False)
            times[name].append(time.perf_counter() - start)
    for i, (name, model) in enumerate(models.items()):
        np.save(work / f"st-{i}-speed.npy", model.encode(speed, batch_size=args.batch_size))
        np.save(work / f"st-{i}-quality.npy",
                model.encode(quality, batch_size=args.batch_size))
    del emb
    print(json.dumps({
        "version": built["version"], "errors": built["errors"],
        "variants": [{"name": name, "index": i, "times_s": times[name],
                      "sentences_per_s": len(speed) / statistics.median(times[name])}
                     for i, name in enumerate(models)]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
