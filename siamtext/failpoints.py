"""Failpoints: named places where a test makes this process die as by ``kill -9``.

The reliability tests and ``benchmarks/reliability.py`` run the real ``siamtext train``
command and need it to die at exact moments (in the middle of a step, half-way through a
checkpoint, during the final save). They set ``SIAMTEXT_FAILPOINTS`` to a comma-separated
list of ``point`` or ``point=value`` entries; when the process reaches a listed point (with
that value), it sends itself ``SIGKILL``: no ``finally`` block, no flush, no cleanup, as when
the machine or a scheduler kills it. Unset (always, outside tests), a failpoint costs one
dictionary lookup.

Points:
    ``step=N``: after the forward and backward passes of optimizer step N (1-based), before
    the weights change.
    ``checkpoint=N``: half-way through writing checkpoint N (the model is written, the
    optimizer state and the trainer state are not).
    ``commit=NAME``: a folder named NAME (``checkpoint-4``, the model folder) is complete in
    its staging folder, not yet moved into place.
    ``save=NAME``: ``save_pretrained`` of a folder named NAME has written the weights but not
    the tokenizer and configuration.
"""

from __future__ import annotations

import os
import signal

ENV = "SIAMTEXT_FAILPOINTS"
_ANY = object()
_parsed: tuple[str, dict[str, object]] | None = None


def _points() -> dict[str, object]:
    global _parsed
    raw = os.environ.get(ENV, "")
    if _parsed is None or _parsed[0] != raw:
        points: dict[str, object] = {}
        for item in filter(None, (s.strip() for s in raw.split(","))):
            name, sep, value = item.partition("=")
            points.setdefault(name, set())
            if sep:
                points[name].add(value)  # type: ignore[union-attr]
            else:
                points[name] = _ANY
        _parsed = (raw, points)
    return _parsed[1]


def failpoint(name: str, value: object = None) -> None:
    """Die by ``SIGKILL`` here if ``SIAMTEXT_FAILPOINTS`` lists ``name`` (with ``value``)."""
    points = _points()
    if name not in points:
        return
    wanted = points[name]
    if wanted is _ANY or str(value) in wanted:  # type: ignore[operator]
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)  # SIGTERM on Windows
        os.kill(os.getpid(), kill)
