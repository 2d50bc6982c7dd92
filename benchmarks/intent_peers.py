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
  ``sampling_strategy="oversampling"`` instead); params: ``num_iterations``, ``max_steps``,
  ``embeddings`` (also return the fine-tuned body's embeddings of the training and eval
  texts, ``train_embeddings`` and ``eval_embeddings``, for heads the caller fits).
- softmax: ``AutoModelForSequenceClassification`` on the same checkpoint, a plain torch loop:
  AdamW (weight decay 0.01, none on biases and LayerNorm, as transformers' Trainer), linear
  warm-up over 10% of the steps then linear decay, max length 128 with dynamic padding;
  params: ``lr`` (5e-5), ``head_lr`` (= lr), ``batch_size`` (32), ``epochs`` (1),
  ``class_weight`` (False); or ``tune`` (True) with ``lrs``, ``head_lr_factor`` (10),
  ``max_epochs``, ``patience`` (3), ``validation_rows`` (indices into the training rows): the
  learning rate and epochs chosen on those rows, then trained on all of them (see
  :func:`run_softmax`). With ``tune``, also ``progress`` (a JSON file) and ``deadline`` (a
  Unix time): each learning rate's finished search is kept in the file, so that a run cut off
  at a session's end goes on from there (:class:`Progress`), and no unit whose estimated time
  (from the epochs already timed) would pass the deadline is started: OUT.json then holds
  ``{"incomplete": REASON}`` instead of a result.
"""

from __future__ import annotations

import argparse
import hashlib
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model  # noqa: E402  (common imports torch, nothing of siamtext)


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


def cpu() -> str:
    """This machine's CPU model (:func:`common.cpu_model`), with "avx512_vnni" when it has it:
    the units of a run resumed in another session may have been measured on another machine,
    and each says which."""
    try:
        vnni = "avx512_vnni" in Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        vnni = False
    return cpu_model() + (" avx512_vnni" if vnni else "")


def digest(*parts: object) -> str:
    """A short key of JSON-serialisable inputs: the same inputs give the same key."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    """numpy scalars and arrays as JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


class Progress:
    """The finished units of a long run, kept in a JSON file so that a run cut off (a
    session's end, a kill) goes on from the last finished unit instead of from the start.

    A unit is one learning rate's early-stopped search of the tuned softmax classifier, or one
    method of a benchmark part (``intent_quality.py``). The file maps a key, a
    :func:`digest` of everything the units depend on (data, settings, seed), to ``{unit:
    record}``; each record says on which CPU and day it was measured. Several runs (a part
    and the softmax run inside it) share one file, each under its own key, one writer at a
    time. Without a path nothing is kept.

    Args:
        path: The JSON file, or None.
        key: This run's key.
    """

    def __init__(self, path: str | Path | None, key: str) -> None:
        self.path = Path(path) if path else None
        self.key = key
        self.units: dict[str, dict] = self._read().get(key, {})

    def _read(self) -> dict:
        if self.path is None or not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def get(self, unit: str) -> dict | None:
        """The record of a finished unit, or None."""
        return self.units.get(unit)

    def put(self, unit: str, record: dict) -> dict:
        """Keep a finished unit's record (with where and when it was measured); returns it."""
        record = {**record, "measured_on": {"cpu": cpu(), "date": time.strftime("%Y-%m-%d")}}
        self.units[unit] = json.loads(json.dumps(record, default=_plain))
        self._write(self.units)
        return self.units[unit]

    def drop(self) -> None:
        """Forget this run's units: it has finished and its result is recorded elsewhere."""
        self.units = {}
        self._write(None)

    def _write(self, units: dict | None) -> None:
        if self.path is None:
            return
        data = self._read()
        if units is None:
            data.pop(self.key, None)
        else:
            data[self.key] = units
        if not data:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def fits(deadline: float | None, estimate: float | None) -> bool:
    """Whether a unit estimated to take ``estimate`` s (None: not known yet) may start."""
    return deadline is None or estimate is None or time.time() + estimate <= deadline


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
    embeddings = {}
    if params.get("embeddings"):  # the fine-tuned body's, for other heads fitted by the caller
        for part, texts in (("train", train["texts"]), ("eval", spec["eval"]["texts"])):
            embeddings[f"{part}_embeddings"] = model.encode(
                texts, batch_size=128, show_progress_bar=False)  # what its head is fed
    effective = {key: getattr(args, key) for key in (
        "batch_size", "num_epochs", "num_iterations", "sampling_strategy", "max_steps",
        "body_learning_rate", "warmup_proportion", "l2_weight", "seed")}
    head = model.model_head
    effective["head"] = {"class": type(head).__name__, **{
        key: value for key, value in head.get_params().items()
        if isinstance(value, int | float | str | bool | None)}}
    return {"classes": [str(c) for c in head.classes_], "proba": proba,
            "train_seconds": train_seconds, "predict_seconds": predict_seconds,
            "params": effective, **embeddings, "versions": versions(
                "setfit", "sentence-transformers", "transformers", "torch", "scikit-learn")}


class SoftmaxRun:
    """One softmax fine-tune: ``AutoModelForSequenceClassification`` on the checkpoint, AdamW
    (weight decay 0.01, none on biases and LayerNorm, as transformers' Trainer), the new head
    at ``head_lr`` and the encoder at ``lr``, linear warm-up over 10 % of the steps of
    ``epochs`` then linear decay, max length 128 with dynamic padding; optionally a
    class-weighted cross-entropy (``n / (classes * count)``, scikit-learn's "balanced")."""

    def __init__(self, spec: dict, classes: list[str], lr: float, head_lr: float,
                 epochs: int, batch_size: int, class_weight: bool, seed: int) -> None:
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.torch, self.classes, self.batch_size = torch, classes, batch_size
        self.index = {label: i for i, label in enumerate(classes)}
        torch.manual_seed(seed)  # the new classifier layer's initialisation
        self.tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        self.model = AutoModelForSequenceClassification.from_pretrained(
            spec["model"], num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id=self.index)
        head = [(n, p) for n, p in self.model.named_parameters() if n.startswith("classifier")]
        body = [(n, p) for n, p in self.model.named_parameters()
                if not n.startswith("classifier")]
        groups = []
        for params, rate in ((body, lr), (head, head_lr)):
            decay = [p for n, p in params if not ("bias" in n or "LayerNorm" in n)]
            no_decay = [p for n, p in params if "bias" in n or "LayerNorm" in n]
            groups += [{"params": decay, "weight_decay": 0.01, "lr": rate},
                       {"params": no_decay, "weight_decay": 0.0, "lr": rate}]
        self.optimizer = torch.optim.AdamW(groups)
        self.epochs, self.class_weight, self.seed = epochs, class_weight, seed

    def encode(self, batch: list[str]) -> dict:
        return self.tokenizer(batch, padding=True, truncation=True, max_length=128,
                              return_tensors="pt")

    def train(self, texts: list[str], labels: list[str],
              after_epoch: object = None) -> int:
        """Train for ``self.epochs``; ``after_epoch(epoch)`` may return True to stop early.
        Returns the number of steps run."""
        torch = self.torch
        import transformers

        target = torch.tensor([self.index[label] for label in labels])
        weight = None
        if self.class_weight:
            counts = torch.bincount(target, minlength=len(self.classes)).float()
            weight = len(labels) / (len(self.classes) * counts.clamp(min=1))
        steps = self.epochs * math.ceil(len(texts) / self.batch_size)
        scheduler = transformers.get_linear_schedule_with_warmup(
            self.optimizer, math.ceil(0.1 * steps), steps)
        generator = torch.Generator().manual_seed(self.seed)
        done = 0
        for epoch in range(self.epochs):
            self.model.train()
            order = torch.randperm(len(texts), generator=generator).tolist()
            for i in range(0, len(order), self.batch_size):
                rows = order[i:i + self.batch_size]
                logits = self.model(**self.encode([texts[r] for r in rows])).logits
                loss = torch.nn.functional.cross_entropy(logits, target[rows], weight=weight)
                loss.backward()
                self.optimizer.step()
                scheduler.step()
                self.optimizer.zero_grad()
                done += 1
            if after_epoch is not None and after_epoch(epoch + 1):
                break
        return done

    def proba(self, texts: list[str]):
        torch = self.torch
        self.model.eval()
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(texts), 128):
                chunks.append(self.model(**self.encode(texts[i:i + 128])).logits.softmax(-1))
        return torch.cat(chunks).numpy() if chunks else torch.empty(0, len(self.classes)).numpy()


def tune_one(spec: dict, classes: list[str], lr: float, head_lr: float, max_epochs: int,
             patience: int, batch_size: int, class_weight: bool, seed: int,
             texts: list[str], labels: list[str], val_texts: list[str],
             val_labels: list[str]) -> dict:
    """One learning rate of the search: train up to ``max_epochs`` on ``texts``, scoring
    ``val_texts`` after each epoch, until ``patience`` epochs bring no better validation
    accuracy. Its validation curve, best epoch, and seconds (model load, training and
    validation; each epoch's too)."""
    start = time.perf_counter()
    run = SoftmaxRun(spec, classes, lr, head_lr, max_epochs, batch_size, class_weight, seed)
    history: list[float] = []
    marks = [start]

    def score(epoch: int) -> bool:
        pred = run.proba(val_texts).argmax(axis=1)
        history.append(round(100 * float(sum(
            classes[p] == y for p, y in zip(pred, val_labels))) / len(val_labels), 2))
        marks.append(time.perf_counter())
        best = history.index(max(history))
        return len(history) - 1 - best >= patience

    run.train(texts, labels, score)
    best_epoch = history.index(max(history)) + 1
    log(f"softmax tune: lr {lr:g}: validation {history} -> epoch {best_epoch}")
    return {"lr": lr, "head_lr": head_lr, "validation": history, "best_epoch": best_epoch,
            "best": max(history), "seconds": round(time.perf_counter() - start, 1),
            "epoch_seconds": [round(b - a, 1) for a, b in zip(marks, marks[1:])]}


def run_softmax(spec: dict) -> dict:
    """Fine-tunes the checkpoint end to end with a softmax head; returns its probabilities.

    With ``params["tune"]`` (the practitioner's recipe of issue 23), the learning rate and
    the number of epochs are chosen on ``params["validation_rows"]``, the split of the
    training rows that siamtext's recipe selection uses (the caller computes it with
    ``siamtext.recipes.validation_split``): for each rate of ``lrs`` (encoder; the new head at
    ``head_lr_factor`` times it), train up to ``max_epochs`` on the rest with early stopping
    (``patience`` epochs without a better validation accuracy), keep the rate and epoch
    count with the best validation accuracy (the smaller rate on a tie), then train that
    recipe on all the rows. Without it: one fixed recipe (``lr``, ``epochs``)."""
    params, train, seed = spec.get("params", {}), spec["train"], spec.get("seed", 0)
    batch_size, class_weight = params.get("batch_size", 32), bool(params.get("class_weight"))
    classes = sorted(set(train["labels"]))
    texts, labels = train["texts"], train["labels"]
    start = time.perf_counter()
    selection: list[dict] = []
    if params.get("tune"):
        lrs = params.get("lrs", [5e-5, 1e-4, 2e-4, 5e-4])
        factor = params.get("head_lr_factor", 10.0)
        max_epochs, patience = params.get("max_epochs", 10), params.get("patience", 3)
        val_rows = sorted(params["validation_rows"])
        held = set(val_rows)
        fit_rows = [i for i in range(len(texts)) if i not in held]
        val_texts, val_labels = [texts[i] for i in val_rows], [labels[i] for i in val_rows]
        deadline = params.get("deadline")
        progress = Progress(params.get("progress"), digest(
            "softmax", Path(spec["model"]).name, texts, labels, val_rows, seed, batch_size,
            class_weight, factor, max_epochs, patience))
        for lr in lrs:
            unit = f"lr={lr:g}"
            if progress.get(unit) is None:
                timed = [t for c in progress.units.values() for t in c["epoch_seconds"]]
                estimate = max_epochs * max(timed) if timed else None
                if not fits(deadline, estimate):
                    return {"incomplete": f"softmax: {unit} ({estimate:.0f} s at most, "
                            f"{max_epochs} epochs) would not finish before the deadline; "
                            f"done: {sorted(progress.units)}"}
                progress.put(unit, tune_one(spec, classes, lr, lr * factor, max_epochs,
                                            patience, batch_size, class_weight, seed,
                                            [texts[i] for i in fit_rows],
                                            [labels[i] for i in fit_rows],
                                            val_texts, val_labels))
            else:
                log(f"softmax tune: {unit} kept from {progress.path}")
            selection.append(progress.get(unit))
        chosen = max(selection, key=lambda c: (c["best"], -c["lr"]))
        lr, head_lr, epochs = chosen["lr"], chosen["head_lr"], chosen["best_epoch"]
        timed = [t for c in selection for t in c["epoch_seconds"]]
        estimate = epochs * max(timed) * len(texts) / len(fit_rows)
        if not fits(deadline, estimate):
            return {"incomplete": f"softmax: the final training ({estimate:.0f} s at most, "
                    f"{epochs} epochs on all rows) would not finish before the deadline; the "
                    f"search is done ({len(selection)} rates kept in {progress.path})"}
        # each rate's own seconds, as measured when it ran (maybe in an earlier process)
        selection_seconds = sum(c["seconds"] for c in selection)
    else:
        lr = params.get("lr", 5e-5)
        head_lr, epochs = params.get("head_lr", lr), params.get("epochs", 1)
        selection_seconds = time.perf_counter() - start
    run = SoftmaxRun(spec, classes, lr, head_lr, epochs, batch_size, class_weight, seed)
    log(f"softmax: loaded {spec['model']}")
    final_start = time.perf_counter()
    steps = run.train(texts, labels)
    final_seconds = time.perf_counter() - final_start
    log(f"softmax: trained on {len(texts)} texts, {steps} steps in {final_seconds:.1f}s")
    start = time.perf_counter()
    proba = run.proba(spec["eval"]["texts"])
    predict_seconds = time.perf_counter() - start
    log(f"softmax: predicted {len(proba)} texts in {predict_seconds:.1f}s")
    effective = {"lr": lr, "head_lr": head_lr, "batch_size": batch_size, "epochs": epochs,
                 "steps": steps, "warmup": 0.1, "weight_decay": 0.01, "max_length": 128,
                 "scheduler": "linear", "class_weight": class_weight, "seed": seed,
                 "threads": run.torch.get_num_threads()}
    if params.get("tune"):
        effective["selection"] = {"candidates": selection, "seconds": round(selection_seconds, 1),
                                  "max_epochs": params.get("max_epochs", 10),
                                  "patience": params.get("patience", 3)}
        effective["final_measured_on"] = {"cpu": cpu(), "date": time.strftime("%Y-%m-%d")}
        progress.drop()  # the caller records the result
    # selection included, as siamtext's seconds include its recipe selection
    return {"classes": classes, "proba": proba,
            "train_seconds": selection_seconds + final_seconds,
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
    params = spec.get("params", {})
    if params.get("tune"):
        rows = params.get("validation_rows")
        if (not isinstance(rows, list) or not rows or len(rows) >= len(texts)
                or not all(isinstance(i, int) and 0 <= i < len(texts) for i in rows)):
            raise ValueError("params.validation_rows: with tune, expected a non-empty list of "
                             f"row indices below {len(texts)} that leaves rows to train on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("peer", choices=["setfit", "softmax"])
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    check(spec)
    result = (run_setfit if args.peer == "setfit" else run_softmax)(spec)
    if "incomplete" in result:
        log(f"{args.peer}: incomplete: {result['incomplete']}")
    for key in ("proba", "train_embeddings", "eval_embeddings"):
        if key in result:
            result[key] = [[round(float(p), 6) for p in row] for row in result[key]]
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log(f"{args.peer}: wrote {args.out}")


if __name__ == "__main__":
    main()
