"""GPU speed at bf16: training rows/s and encoding sentences/s, siamtext against
sentence-transformers.

Both libraries start from the packaged all-MiniLM-L6-v2 on the same device, in this one run:

* training: MultipleNegativesRankingLoss on (anchor, positive) rows built with
  ``make_anchor_positives`` from a stratified, seeded Banking77 train subset (1,000 texts),
  batch 64, lr 5e-5, 10 % warm-up, 1 epoch, bf16 mixed precision in both (siamtext
  ``fit(mixed_precision="bf16")``, sentence-transformers ``bf16=True``: the same autocast of
  the ``transformers.Trainer`` both build on; fp32 weights and optimizer). siamtext keeps
  its default batching, sentence-transformers uses NO_DUPLICATES (as in
  ``train_quality.py``). Rows/s = rows the loss received / wall seconds of the training call
  (trainer set-up and data preparation included; the model is loaded before). A fresh model
  per run; the libraries alternate; the median of ``--repeats`` runs.
* encoding: 6,000 Banking77 texts, batch 128, under bf16 autocast in both (siamtext
  ``encode(precision="bf16")`` autocasts; sentence-transformers ``encode`` runs inside
  ``torch.autocast(device, dtype=torch.bfloat16)``: the same fp32 weights and the same
  autocast, rather than ``model.half()``, which would be fp16 weights). Both sort by length
  and return normalised float32 numpy arrays. One warm-up call each, then ``--repeats``
  alternating timed calls; the median. The mean cosine between the two libraries'
  embeddings of the same texts checks that they computed the same thing.

Usage:
    python benchmarks/gpu_speed.py                        # on a CUDA GPU (~1 min)
    python benchmarks/gpu_speed.py --device cpu --quick   # smoke test on a CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import alternate, load_banking77, median, require, table, write_results  # noqa: E402
from distributed import model_path, stratified  # noqa: E402

from siamtext import SiamText  # noqa: E402
from siamtext.data import make_anchor_positives  # noqa: E402
from siamtext.training import fit  # noqa: E402

LIBS = ("siamtext", "sentence-transformers")


def load(lib: str, device: str) -> object:
    if lib == "siamtext":
        return SiamText(model_path(), device=device)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(), device=device)


def train(lib: str, rows: dict, cfg: argparse.Namespace) -> float:
    """Train a fresh model once; rows/s of the training call."""
    model = load(lib, cfg.device)
    cpu = cfg.device == "cpu"
    if lib == "siamtext":
        start = time.perf_counter()
        fit(model, rows, "MultipleNegativesRankingLoss", epochs=1, batch_size=cfg.batch,
            learning_rate=5e-5, warmup_ratio=0.1, seed=cfg.seed, show_progress=False,
            logging_steps=10_000, mixed_precision="bf16", use_cpu=cpu)
        seconds = time.perf_counter() - start
        return model.card_data.training["rows_seen"] / seconds

    import datasets
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    loss = losses.MultipleNegativesRankingLoss(model)
    seen = [0]  # rows the loss received, as siamtext counts them
    loss.register_forward_pre_hook(
        lambda _m, args: seen.__setitem__(0, seen[0] + int(args[0][0]["input_ids"].shape[0])))
    data = datasets.Dataset.from_dict({"anchor": rows["anchor"], "positive": rows["positive"]})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        args = Args(output_dir=tmp, num_train_epochs=1, per_device_train_batch_size=cfg.batch,
                    learning_rate=5e-5, warmup_steps=0.1, seed=cfg.seed, save_strategy="no",
                    report_to="none", logging_steps=10_000, disable_tqdm=True, bf16=True,
                    use_cpu=cpu, batch_sampler=BatchSamplers.NO_DUPLICATES)
        SentenceTransformerTrainer(model=model, args=args, loss=loss, train_dataset=data).train()
        seconds = time.perf_counter() - start
    return seen[0] / seconds


def encoder(lib: str, model: object, device: str) -> object:
    """``texts -> (n, dim)`` normalised float32 embeddings at bf16 autocast."""
    if lib == "siamtext":
        return lambda texts: model.encode(texts, batch_size=128, precision="bf16")

    def st_encode(texts: list[str]) -> np.ndarray:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            return model.encode(texts, batch_size=128, normalize_embeddings=True,
                                convert_to_numpy=True)

    return st_encode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: 64 training rows (from 2 texts per class) at "
                             "batch 32, 128 texts to encode")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip sentence-transformers")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    cfg = parser.parse_args(argv)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU visible to torch (use --device cpu to test)")
    cfg.rows, cfg.batch, cfg.texts = (154, 32, 128) if cfg.quick else (1000, 64, 6000)
    cfg.repeats = cfg.repeats or (1 if cfg.quick else 3)
    require("banking77")
    libs = [lib for lib in LIBS if cfg.peer or lib == "siamtext"]
    print(f"device: {cfg.device}"
          + (f" ({torch.cuda.get_device_name(cfg.device)})" if cfg.device != "cpu" else ""),
          flush=True)

    train_x, train_y = load_banking77("train")
    x, y = stratified(train_x, train_y, cfg.rows, cfg.seed)
    rows = make_anchor_positives(x, y, seed=cfg.seed,
                                 max_rows=64 if cfg.quick else None).to_dict()
    texts = random.Random(cfg.seed).sample(train_x, cfg.texts)

    train_runs: dict[str, list[float]] = {lib: [] for lib in libs}
    for r in range(cfg.repeats):
        for lib in (libs if r % 2 == 0 else libs[::-1]):
            train_runs[lib].append(train(lib, rows, cfg))
            print(f"train {lib}: {train_runs[lib][-1]:.1f} rows/s", flush=True)

    models = {lib: load(lib, cfg.device) for lib in libs}
    encoders = {lib: encoder(lib, models[lib], cfg.device) for lib in libs}
    embeddings = {lib: fn(texts) for lib, fn in encoders.items()}  # warm-up, and the check
    times = alternate({lib: (lambda fn=fn: fn(texts)) for lib, fn in encoders.items()},
                      cfg.repeats)
    results: dict = {lib: {"train_rows_per_s": round(median(train_runs[lib]), 1),
                           "train_rows_per_s_runs": [round(v, 1) for v in train_runs[lib]],
                           "encode_sentences_per_s": round(cfg.texts / median(times[lib]), 1),
                           "encode_seconds": [round(t, 3) for t in times[lib]]}
                     for lib in libs}
    if cfg.peer:
        ours, peer = results["siamtext"], results["sentence-transformers"]
        results["ratio"] = {
            "train": round(ours["train_rows_per_s"] / peer["train_rows_per_s"], 3),
            "encode": round(ours["encode_sentences_per_s"] / peer["encode_sentences_per_s"], 3)}
        a, b = embeddings["siamtext"], embeddings["sentence-transformers"]
        results["mean_cosine_between_libraries"] = round(float(np.mean(np.sum(a * b, 1))), 4)

    out = [[lib, results[lib]["train_rows_per_s"], results[lib]["encode_sentences_per_s"]]
           for lib in libs]
    if cfg.peer:
        out.append(["ratio siamtext / sentence-transformers", results["ratio"]["train"],
                    results["ratio"]["encode"]])
    print(f"\n### {cfg.device}, bf16: MiniLM, MNRL training ({len(rows['anchor'])} rows, batch "
          f"{cfg.batch}, 1 epoch), encoding ({cfg.texts} texts, batch 128); median of "
          f"{cfg.repeats}\n")
    print(table(["library", "train rows/s", "encode sentences/s"], out))
    if cfg.peer:
        print(f"\nmean cosine between the libraries' bf16 embeddings: "
              f"{results['mean_cosine_between_libraries']} (1.0 = identical)")
    name = "gpu_speed" + ("_cpu" if cfg.device == "cpu" else "") + ("_quick" if cfg.quick else "")
    settings = {k: v for k, v in vars(cfg).items()}
    path = write_results(name, {"settings": settings, "results": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
