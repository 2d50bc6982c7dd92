"""Label every text of a file with an intent classifier, holding one chunk at a time."""

from __future__ import annotations

import itertools
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from siamtext.cli.tabular import write_rows
from siamtext.corpus.encode import check_output
from siamtext.corpus.readers import open_source
from siamtext.validation import check_positive_int

logger = logging.getLogger(__name__)

PREDICTION_FORMATS = (".csv", ".tsv", ".jsonl")
_SCORE_ROWS = 1024  # queries scored at a time: (rows, n_classes) probabilities stay small


def classify_file(
    classifier: Any,
    input: str | Path,
    output: str | Path | None = None,
    *,
    column: str = "text",
    top_k: int = 1,
    chunk_size: int = 10_000,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> Path | None:
    """Predict a label for every text of a file and write one row per text, in input order.

    Texts are read ``chunk_size`` at a time, embedded once per chunk by the classifier's
    model and scored ``1,024`` at a time, so memory stays flat however long the file is
    (measured in ``benchmarks/reliability.py``: a million texts against 10,000 classes).
    Each output row is ``id`` (the input row number, from 0), ``text``, ``label``,
    ``similarity`` (best cosine similarity to a class), ``probability`` and, with
    ``top_k > 1``, ``top_k`` (``"label:probability"`` pairs, best first). An empty line, a
    null or a non-string cell is classified as ``""`` and keeps its row. The output is
    written to ``NAME.partial.EXT`` and renamed when complete, so a crash never leaves a
    short file under the final name. A classifier with a ``first_pass`` writes its cascade's
    labels (the transformer still embeds every text: the similarity and probability columns
    need it).

    Args:
        classifier: A fitted :class:`~siamtext.classify.IntentClassifier` with a model.
        input: ``.txt``, ``.csv``, ``.tsv``, ``.jsonl`` or ``.parquet`` (see
            :class:`~siamtext.corpus.TextSource`), or a Hub dataset id.
        output: ``.csv``, ``.tsv`` or ``.jsonl``; ``None`` or ``"-"`` writes csv to stdout.
        column: The text column of csv/tsv/jsonl/parquet input.
        top_k: Labels written per text.
        chunk_size: Texts read and embedded at a time.
        overwrite: Replace an existing ``output``.
        show_progress: A progress bar over rows; ``None``: when stderr is a terminal.

    Returns:
        The output path (``None`` for stdout).

    Raises:
        ValueError: For a classifier without a model, an unsupported output extension, an
            existing output without ``overwrite``, a bad ``top_k`` or ``chunk_size``, or a
            missing column; all before anything is read or written.
        sklearn.exceptions.NotFittedError: If the classifier is not fitted.
        FileNotFoundError: If ``input`` is not a file.
    """
    check_positive_int(top_k, "top_k")
    check_positive_int(chunk_size, "chunk_size")
    if getattr(classifier, "model", None) is None:
        raise ValueError("classify_file needs a classifier with a model to embed the texts")
    classifier._check_fitted()
    target = check_predictions_output(output, overwrite)
    source = open_source(input, column)
    fields = ["id", "text", "label", "similarity", "probability"] + (
        ["top_k"] if top_k > 1 else [])
    if show_progress is None:
        show_progress = sys.stderr.isatty()

    with tqdm(total=len(source), unit="row", unit_scale=True, desc=f"Classifying {source.name}",
              disable=not show_progress) as bar:
        rows = _rows(classifier, iter(source), top_k, chunk_size, bar)
        if target is None:
            write_rows(None, rows, fields)
            return None
        partial = partial_path(target)
        try:
            write_rows(partial, rows, fields)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
    return target


def check_predictions_output(output: str | Path | None, overwrite: bool = False) -> Path | None:
    """``output`` as a path (``None`` for stdout), refused when its extension is not
    ``.csv``/``.tsv``/``.jsonl`` or when it exists and ``overwrite`` is false."""
    if output in (None, "-"):
        return None
    return check_output(output, overwrite, PREDICTION_FORMATS)


def partial_path(output: Path) -> Path:
    """Where ``output`` is written until complete: ``pred.csv`` -> ``pred.partial.csv`` (the
    extension kept, since it picks the format)."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def _rows(classifier: Any, texts: Iterator[str], top_k: int, chunk_size: int,
          bar: tqdm) -> Iterator[dict]:
    """Output rows, chunk by chunk: each chunk embedded once, each small block of it scored
    once."""
    model = classifier.model
    row = 0
    while chunk := list(itertools.islice(texts, chunk_size)):
        emb = model.encode(chunk, batch_size=classifier.batch_size, convert_to="torch",
                           show_progress=False)
        for a in range(0, len(chunk), _SCORE_ROWS):
            labels, sims, top, proba = classifier._answer_block(
                chunk[a : a + _SCORE_ROWS], emb[a : a + _SCORE_ROWS], top_k)
            labels, sims = labels.tolist(), sims.tolist()
            for i, label in enumerate(labels):
                out = {"id": row, "text": chunk[a + i], "label": label,
                       "similarity": round(sims[i], 6),
                       "probability": round(float(proba[i, 0]), 6)}
                if top_k > 1:
                    out["top_k"] = " ".join(f"{lab}:{p:.4f}"
                                            for lab, p in zip(top[i], proba[i], strict=True))
                yield out
                row += 1
        bar.update(len(chunk))
        logger.debug("classified %d rows", row)

