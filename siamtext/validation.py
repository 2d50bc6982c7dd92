"""Checks on user input at the public boundary, with messages that name the argument."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_texts(texts: object, name: str = "sentences") -> list[str]:
    """Return ``texts`` as a list of strings.

    A single string becomes a one-element list; an empty list stays empty; empty strings are
    allowed, and so is any valid Unicode (control, zero-width, right-to-left characters).

    Raises:
        TypeError: If ``texts`` is not a string or an iterable of strings, naming the first
            offending index and its type.
        ValueError: If a string holds a lone surrogate (``"\\ud800"``, what decoding bytes
            with ``errors="surrogateescape"`` leaves): not Unicode text, no tokenizer takes it.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif texts is None or not isinstance(texts, Iterable) or isinstance(texts, (bytes, dict)):
        raise TypeError(
            f"{name} must be a string or a list of strings, got {type(texts).__name__}"
        )
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(
                f"{name}[{i}] must be a string, got {type(text).__name__}: {text!r:.60}"
            )
        if (bad := _SURROGATE.search(text)) is not None:
            raise ValueError(
                f"{name}[{i}] holds a lone surrogate {bad.group()!r} at position {bad.start()}: "
                "not valid Unicode; decode the bytes with errors='replace'"
            )
    return out


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int greater than zero.

    Raises:
        ValueError: Naming ``name`` and the value given.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_choice(value: object, choices: Sequence[str], name: str) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: Naming ``name``, the value given and the choices.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_label(label: object, name: str = "label") -> str | int:
    """A label as a JSON-safe ``str`` or ``int`` (numpy strings and integers included).

    Raises:
        TypeError: For a bool or anything but a string or an integer, naming ``name``.
    """
    import numpy as np

    if isinstance(label, (bool, np.bool_)):
        raise TypeError(f"{name} must be a string or an integer, got bool {label!r}")
    if isinstance(label, (str, np.str_)):
        return str(label)
    if isinstance(label, (int, np.integer)):
        return int(label)
    raise TypeError(f"{name} must be a string or an integer, got {type(label).__name__}: "
                    f"{label!r:.60}")
