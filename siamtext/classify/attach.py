"""Opening the collection a classifier names: a path, or a :class:`siamtext.index.Index`.

:class:`~siamtext.classify.IntentClassifier` and :class:`~siamtext.classify.DuplicateDetector`
take ``index=`` as either; a path is opened by the classifier (and closed by it), created on
its first write when nothing is there yet; an open ``Index`` is used as given (its owner
closes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siamtext.index import Index
    from siamtext.model import SiamText


def check_index(index: object) -> None:
    """Refuse an ``index`` that is not ``None``, a path or an open Index."""
    from siamtext.index import Index

    if index is None or isinstance(index, (str, Path, Index)):
        return
    raise TypeError(f"index must be a path (str or Path) or a siamtext.index.Index, got "
                    f"{type(index).__name__}")


def open_index(index: str | Path | Index, model: SiamText | None, dim: int | None,
               readonly: bool = False) -> tuple[Index, bool]:
    """The collection ``index`` names: an open :class:`Index` as given, or the one at a path
    (created for ``model`` / ``dim`` when there is none and ``dim`` is known).

    Returns:
        ``(index, owned)``: ``owned`` when it was opened here (then the classifier closes it).

    Raises:
        FileNotFoundError: A path with no collection and no ``dim`` to create one with.
        ValueError: An open ``Index`` filled by another encoder than ``model`` (both named).
    """
    from siamtext.index import Index

    if isinstance(index, Index):
        check_encoder(index, model)
        return index, False
    path = Path(index)
    if readonly or dim is None:
        if not path.exists():
            raise FileNotFoundError(f"no collection at {path}: write to it first (fit, "
                                    "add_examples, add) to create it, or pass the path of an "
                                    "existing one")
        return Index.open(path, model, readonly=readonly), True
    return Index.create(path, model, dim=None if model is not None else dim,
                        exist_ok=True), True


def check_encoder(index: Index, model: SiamText | None) -> None:
    """Refuse an open collection filled by another encoder than the classifier's."""
    from siamtext.index import fingerprint as fp

    stored = index.fingerprint
    if model is None or stored is None or index.model is model:
        return
    given = fp.fingerprint(model, index.precision)
    diff = fp.differences(stored, given)
    if diff:
        raise ValueError(f"the index was filled by encoder {stored.get('model')!r}, the "
                         f"classifier's is {given['model']!r}: {'; '.join(diff)}. Their "
                         "vectors are not comparable: give both the same model")
