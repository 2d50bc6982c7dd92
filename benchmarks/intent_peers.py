"""The peers of siamtext's intent classifier: SetFit, and a softmax classifier tuned end to end.

Called by ``benchmarks/intent_quality.py`` in a subprocess, one run per peer, so that each
runs in its own venv: ``setfit`` in the SetFit venv (``make setfit-venv``), ``softmax`` in
siamtext's own venv (it needs only transformers and torch). The script imports nothing of
siamtext.

    python intent_peers.py setfit SPEC.json OUT.json
    python intent_peers.py softmax SPEC.json OUT.json

SPEC.json: ``{"model": DIR, "train": {"texts": [...], "labels": [...]}, "eval": {"texts":
[...]}, "seed": 0, "params": {...}}``, labels are strings. OUT.json: ``{"classes": [...],
"proba": [[...], ...], "train_seconds", "predict_seconds", "params", "versions"}``; the
columns of ``proba`` follow ``classes`` (sorted labels). ``train_seconds`` is the wall time
from the loaded model to the trained one (SetFit: contrastive body and logistic head);
loading the model is not counted.

- setfit: SetFit's default recipe (sentence-transformers body, scikit-learn
  LogisticRegression head, CosineSimilarityLoss on sampled pairs), batch size 16, one epoch,
  ``num_iterations`` 20 as in the SetFit paper and README (SetFit >= 1.0 defaults to
  ``sampling_strategy="oversampling"`` instead); params: ``num_iterations``, ``max_steps``.
- softmax: ``AutoModelForSequenceClassification`` on the same checkpoint, a plain torch loop:
  AdamW (weight decay 0.01, none on biases and LayerNorm, as transformers' Trainer), linear
  warm-up over 10% of the steps then linear decay, max length 128 with dynamic padding;
  params: ``lr`` (5e-5), ``batch_size`` (32), ``epochs`` (1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def versions(*packages: str) -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def run_setfit(spec: dict) -> dict:
    """Fine-tunes SetFit on the training texts; returns its probabilities on the eval texts."""
    import datasets
    import transformers
    from setfit import SetFitModel, Trainer, TrainingArguments
    from setfit import logging as setfit_logging

    setfit_logging.set_verbosity_warning()  # importing setfit's Trainer sets it to info
    transformers.logging.set_verbosity_error()  # also turns the Trainer's tqdm off
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # the Trainer's, on CPU
    params, train = spec.get("params", {}), spec["train"]
    start = time.perf_counter()
    model = SetFitModel.from_pretrained(spec["model"])
    log(f"setfit: loaded {spec['model']} in {time.perf_counter() - start:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, batch_size=16, num_epochs=1,
            num_iterations=params.get("num_iterations", 20),
            max_steps=params.get("max_steps", -1), seed=spec.get("seed", 0),
            report_to="none", save_strategy="no", logging_strategy="no",
            logging_first_step=False, show_progress_bar=False)
        trainer = Trainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(
            {"text": train["texts"], "label": train["labels"]}))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    log(f"setfit: trained on {len(train['texts'])} texts in {train_seconds:.1f}s")
    start = time.perf_counter()
    proba = model.predict_proba(spec["eval"]["texts"], as_numpy=True, show_progress_bar=False)
    predict_seconds = time.perf_counter() - start
    log(f"setfit: predicted {len(proba)} texts in {predict_seconds:.1f}s")
    effective = {key: getattr(args, key) for key in (
        "batch_size", "num_epochs", "num_iterations", "sampling_strategy", "max_steps",
        "body_learning_rate", "warmup_proportion", "l2_weight", "seed")}
    head = model.model_head
    effective["head"] = {"class": type(head).__name__, **{
        key: value for key, value in head.get_params().items()
        if isinstance(value, int | float | str | bool | None)}}
    return {"classes": [str(c) for c in head.classes_], "proba": proba,
            "train_seconds": train_seconds, "predict_seconds": predict_seconds,
            "params": effective, "versions": versions(
                "setfit", "sentence-transformers", "transformers", "torch", "scikit-learn")}


def run_softmax(spec: dict) -> dict:
    """Fine-tunes the checkpoint end to end with a softmax head; returns its probabilities."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    params, train, seed = spec.get("params", {}), spec["train"], spec.get("seed", 0)
    lr, batch_size = params.get("lr", 5e-5), params.get("batch_size", 32)
    epochs, max_length = params.get("epochs", 1), 128
    classes = sorted(set(train["labels"]))
    index = {label: i for i, label in enumerate(classes)}
    labels = torch.tensor([index[label] for label in train["labels"]])
    texts = train["texts"]
    torch.manual_seed(seed)  # the new classifier layer's initialisation
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["model"], num_labels=len(classes), id2label=dict(enumerate(classes)),
        label2id=index)
    log(f"softmax: loaded {spec['model']} in {time.perf_counter() - start:.1f}s")

    def encode(batch: list[str]) -> dict:
        return tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt")

    start = time.perf_counter()
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps = epochs * math.ceil(len(texts) / batch_size)
    warmup = math.ceil(0.1 * steps)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup, steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(texts), generator=generator).tolist()
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            loss = model(**encode([texts[r] for r in rows]), labels=labels[rows]).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        log(f"softmax: epoch {epoch + 1}/{epochs}, last batch loss {loss.item():.4f}")
    train_seconds = time.perf_counter() - start
    log(f"softmax: trained on {len(texts)} texts, {steps} steps in {train_seconds:.1f}s")
    start = time.perf_counter()
    model.eval()
    eval_texts, chunks = spec["eval"]["texts"], []
    with torch.inference_mode():
        for i in range(0, len(eval_texts), 128):
            chunks.append(model(**encode(eval_texts[i:i + 128])).logits.softmax(-1))
    proba = torch.cat(chunks).numpy() if chunks else torch.empty(0, len(classes)).numpy()
    predict_seconds = time.perf_counter() - start
    log(f"softmax: predicted {len(proba)} texts in {predict_seconds:.1f}s")
    effective = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "steps": steps,
                 "warmup_steps": warmup, "weight_decay": 0.01, "max_length": max_length,
                 "scheduler": "linear", "seed": seed, "threads": torch.get_num_threads()}
    return {"classes": classes, "proba": proba, "train_seconds": train_seconds,
            "predict_seconds": predict_seconds, "params": effective,
            "versions": versions("transformers", "torch", "tokenizers")}


def check(spec: dict) -> None:
    train = spec.get("train", {})
    texts, labels = train.get("texts", []), train.get("labels", [])
    if len(texts) != len(labels):
        raise ValueError(f"train: {len(texts)} texts but {len(labels)} labels; expected as many")
    if len(set(labels)) < 2:
        raise ValueError(f"train.labels: {len(set(labels))} distinct labels; expected at least 2")
    if not isinstance(spec.get("eval", {}).get("texts"), list):
        raise ValueError("eval.texts: missing; expected a list of strings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=["setfit", "softmax"])
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    check(spec)
    result = (run_setfit if args.peer == "setfit" else run_softmax)(spec)
    result["proba"] = [[round(float(p), 6) for p in row] for row in result["proba"]]
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"{args.peer}: wrote {args.out}")


if __name__ == "__main__":
    main()
