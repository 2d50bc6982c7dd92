"""Batch samplers: length-grouped batches, and class-balanced P x K batches.

Both yield lists of row indices, reshuffle each epoch from ``seed + epoch`` (``set_epoch`` is
called by the trainer), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Iterator, Sequence

from torch.utils.data import Sampler

from siamtext.validation import check_positive_int

logger = logging.getLogger(__name__)


class _EpochSampler(Sampler[list[int]]):
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (the trainer calls this before each epoch)."""
        self.epoch = epoch

    def _rng(self) -> random.Random:
        return random.Random(self.seed * 1_000_003 + self.epoch)


class LengthGroupedBatchSampler(_EpochSampler):
    """Random batches of rows of similar length, so that little padding is computed.

    Rows are shuffled, cut into mega-batches of ``mega_batches x batch_size`` rows, sorted
    by length inside each, cut into batches, and the batches are shuffled. With ``groups``,
    two rows with the same group key never share a batch (e.g. a class label, for in-batch
    negatives without false negatives, or the text itself, for no duplicate texts); a row
    that fits no open batch waits for the next one, and the rows still waiting at the end of
    the epoch form its last (smaller) batches, so every row is seen once an epoch. The
    number of batches then depends on the epoch's shuffle: ``len`` counts them.

    Args:
        lengths: Token length of each row.
        batch_size: Rows per batch.
        groups: Optional key (or keys) per row; rows sharing a key never share a batch.
        seed: Shuffle seed.
        drop_last: Drop a last batch smaller than ``batch_size``.
        mega_batches: How many batches are sorted together (1 = no length grouping beyond
            the batch, larger = less padding, less randomness).

    Raises:
        ValueError: For an empty ``lengths``, a bad ``batch_size``, ``groups`` of another
            length, or fewer distinct group keys than ``batch_size``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int,
                 groups: Sequence[Hashable | Sequence[Hashable]] | None = None, seed: int = 0,
                 drop_last: bool = False, mega_batches: int = 16) -> None:
        super().__init__(seed)
        check_positive_int(batch_size, "batch_size")
        check_positive_int(mega_batches, "mega_batches")
        if len(lengths) == 0:
            raise ValueError("lengths is empty: there are no rows to batch")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.mega_batches = mega_batches
        self._drawn: tuple[int, list[list[int]]] | None = None  # (epoch, its batches)
        self.groups = None
        if groups is not None:
            if len(groups) != len(self.lengths):
                raise ValueError(f"groups has {len(groups)} entries but there are "
                                 f"{len(self.lengths)} rows")
            self.groups = [_as_keys(g) for g in groups]
            distinct = len({k for keys in self.groups for k in keys})
            if distinct < batch_size:
                raise ValueError(f"batch_size={batch_size} needs at least that many distinct "
                                 f"group keys (no two rows of one group in a batch), but the "
                                 f"data has {distinct}; lower batch_size")

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.groups is None:
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return len(self._epoch_batches())

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._epoch_batches())

    def _epoch_batches(self) -> list[list[int]]:
        """This epoch's batches, drawn once and kept until the epoch changes."""
        if self._drawn is None or self._drawn[0] != self.epoch:
            self._drawn = (self.epoch, self._batches())
        return self._drawn[1]

    def _batches(self) -> list[list[int]]:
        """This epoch's batches, in order (the same for the same seed and epoch)."""
        rng = self._rng()
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * self.mega_batches
        batches: list[list[int]] = []
        carry: list[int] = []
        for start in range(0, len(order), size):
            chunk = carry + order[start : start + size]
            chunk.sort(key=lambda i: -self.lengths[i])
            full, carry = self._split(chunk)
            batches.extend(full)
        while carry:  # leftovers: batches of what remains
            full, rest = self._split(carry, final=True)
            batches.extend(full)
            if rest == carry:
                break
            carry = rest
        batches = [b for b in batches if len(b) == self.batch_size or not self.drop_last]
        rng.shuffle(batches)
        return batches

    def _split(self, rows: list[int], final: bool = False) -> tuple[list[list[int]], list[int]]:
        """Cut sorted rows into batches; return full batches and rows left over."""
        if self.groups is None:
            full = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
            if full and len(full[-1]) < self.batch_size and not final:
                return full[:-1], full[-1]
            return full, []
        open_batches: list[tuple[list[int], set]] = []
        full: list[list[int]] = []
        left: list[int] = []
        for i in rows:
            keys = self.groups[i]
            for batch, seen in open_batches:
                if seen.isdisjoint(keys):
                    batch.append(i)
                    seen.update(keys)
                    break
            else:
                if len(open_batches) < self.mega_batches:
                    open_batches.append(([i], set(keys)))
                else:
                    left.append(i)
                    continue
            if len(open_batches) and any(len(b) == self.batch_size for b, _ in open_batches):
                full.extend(b for b, _ in open_batches if len(b) == self.batch_size)
                open_batches = [(b, s) for b, s in open_batches if len(b) < self.batch_size]
        rest = [i for b, _ in open_batches for i in b] + left
        if final:
            full.extend(b for b, _ in open_batches)
            rest = left
        return full, rest


class ClassBalancedBatchSampler(_EpochSampler):
    """Batches of P classes x K examples each, for batch-mining and in-batch losses.

    Each batch draws ``classes_per_batch`` (P) distinct classes uniformly at random, so
    small classes are seen as often as large ones (their examples cycle), and takes
    ``samples_per_class`` (K) examples of each from a per-class queue that is reshuffled
    when used up. No text appears twice in a batch. An epoch has ``ceil(rows / (P x K))``
    batches. A class with fewer than K distinct texts gives all it has.

    Args:
        labels: Class label of each row (any hashable).
        batch_size: Rows per batch; must be at least P x K.
        samples_per_class: K, examples per class in a batch (2 or more for triplet mining,
            1 for in-batch negatives with one row per class).
        classes_per_batch: P; default ``batch_size // samples_per_class``.
        texts: Optional text (or key) of each row, to keep duplicates out of a batch.
        seed: Shuffle seed.
        drop_last: Drop a last batch... kept for symmetry; every batch here is full-sized.

    Raises:
        ValueError: If ``batch_size`` is smaller than P x K, P exceeds the number of
            classes, there are no rows, or ``samples_per_class >= 2`` and no class has two
            examples.
    """

    def __init__(self, labels: Sequence[Hashable], batch_size: int, samples_per_class: int = 4,
                 classes_per_batch: int | None = None, texts: Sequence[Hashable] | None = None,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(seed)
        check_positive_int(batch_size, "batch_size")
        check_positive_int(samples_per_class, "samples_per_class")
        if classes_per_batch is None:
            classes_per_batch = max(1, batch_size // samples_per_class)
        check_positive_int(classes_per_batch, "classes_per_batch")
        if len(labels) == 0:
            raise ValueError("labels is empty: there are no rows to batch")
        if batch_size < classes_per_batch * samples_per_class:
            raise ValueError(
                f"batch_size={batch_size} is smaller than classes_per_batch x samples_per_class "
                f"= {classes_per_batch} x {samples_per_class} = "
                f"{classes_per_batch * samples_per_class}; raise batch_size or lower P or K")
        by_class: dict[Hashable, list[int]] = {}
        for i, label in enumerate(labels):
            by_class.setdefault(label, []).append(i)
        if classes_per_batch > len(by_class):
            raise ValueError(
                f"classes_per_batch={classes_per_batch} but the data has only {len(by_class)} "
                f"class(es); lower batch_size or samples_per_class (P = batch_size // K)")
        if samples_per_class >= 2 and max(len(v) for v in by_class.values()) < 2:
            raise ValueError("samples_per_class >= 2 but every class has a single example, so "
                             "no batch can hold a positive pair")
        if texts is not None and len(texts) != len(labels):
            raise ValueError(f"texts has {len(texts)} entries but labels has {len(labels)}")
        small = [c for c, v in by_class.items() if len(v) < samples_per_class]
        if small:
            logger.info("%d class(es) have fewer than %d examples; their batches hold all they "
                        "have", len(small), samples_per_class)
        self.by_class = by_class
        self.texts = texts
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.classes_per_batch = classes_per_batch
        self.drop_last = drop_last
        self.num_rows = len(labels)

    def __len__(self) -> int:
        return math.ceil(self.num_rows / (self.classes_per_batch * self.samples_per_class))

    def __iter__(self) -> Iterator[list[int]]:
        rng = self._rng()
        classes = list(self.by_class)
        queues: dict[Hashable, list[int]] = {c: [] for c in classes}
        for _ in range(len(self)):
            batch: list[int] = []
            seen: set = set()
            for c in rng.sample(classes, self.classes_per_batch):
                batch.extend(self._take(c, queues, seen, rng))
            yield batch

    def _take(self, c: Hashable, queues: dict[Hashable, list[int]], seen: set,
              rng: random.Random) -> list[int]:
        members = self.by_class[c]
        want = min(self.samples_per_class, len(members))
        out: list[int] = []
        refilled = False
        while len(out) < want:
            if not queues[c]:
                if refilled:
                    break  # every member tried: duplicates of texts already in the batch
                queue = members[:]
                rng.shuffle(queue)
                queues[c] = queue
                refilled = True
            i = queues[c].pop()
            key = self.texts[i] if self.texts is not None else i
            if key in seen:
                continue
            seen.add(key)
            out.append(i)
        return out


def _as_keys(g: Hashable | Sequence[Hashable]) -> tuple:
    if isinstance(g, (list, tuple)):
        return tuple(g)
    return (g,)
