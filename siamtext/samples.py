"""The sample texts that ship with siamtext, read from the package's ``resources/``.

Written for the project: 320 short utterances over 16 intents (``demo_intents.csv``, 20 for
each), 60 user questions, about half of them in paraphrase groups (``demo_questions.txt``),
and the answer key of those groups (``demo_questions_groups.json``).

A bottom-layer module (it imports nothing of siamtext), so that any layer can take texts
from it: :mod:`siamtext.demo` runs on them, and :mod:`siamtext.backends.openvino` calibrates
int8 on them.
"""

from __future__ import annotations

import csv
import json
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["load_demo_intents", "load_demo_question_groups", "load_demo_questions"]


def _resource(name: str) -> Traversable:
    return resources.files("siamtext") / "resources" / name


def load_demo_intents() -> tuple[list[str], list[str]]:
    """The demo intent data.

    Returns:
        ``(texts, labels)``: two lists of 320 strings, 20 utterances for each of 16 intents.
    """
    with _resource("demo_intents.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_demo_questions() -> list[str]:
    """60 user questions, about half of them in paraphrase groups (one per line, blank lines
    skipped)."""
    text = _resource("demo_questions.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def load_demo_question_groups() -> list[list[int]]:
    """The answer key of the demo questions: lists of indices into
    :func:`load_demo_questions` that are paraphrases of each other."""
    return json.loads(_resource("demo_questions_groups.json").read_text(encoding="utf-8"))
