"""Prototypical loss: each labelled row must pick out its own class's prototype in the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from siamtext.losses.base import LabelledLoss, check_scale, masked_mean
from siamtext.losses.in_batch import DEFAULT_SCALE, SimilarityName, similarity_matrix
from siamtext.validation import check_choice

if TYPE_CHECKING:
    from siamtext.model import SiamText


def prototypical_loss(embeddings: Tensor, labels: Tensor, scale: float,
                      label_smoothing: float = 0.0, similarity: str = "cosine") -> Tensor:
    """Prototypical-network loss over the classes of one batch, leave-one-out.

    Each class present in the batch has a prototype, the mean of its rows' embeddings. Row
    ``i`` is scored against every prototype (``scale * similarity``), its own class's
    prototype made without ``i`` itself, and the loss is the cross-entropy of picking its own
    class among the batch's classes, the target smoothed by ``label_smoothing``:
    ``-(1 - eps) log p_own - eps / C * sum_c log p_c`` over the ``C`` classes. Rows alone in
    their class have no prototype to find and are left out; with none left, the loss is 0
    (attached to the graph).

    Everything is computed with ``(batch, batch)`` masks, nothing is read back to the host:
    class ``c`` is represented by the column of its first row in the batch.

    Args:
        embeddings: ``(batch, dim)``.
        labels: ``(batch,)`` class ids.
        scale: Inverse temperature applied to the similarities.
        label_smoothing: ``eps`` in ``[0, 1)``: the share of the target spread evenly over
            the batch's classes.
        similarity: ``"cosine"`` or ``"dot"``.
    """
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    counts = same.sum(dim=1).to(embeddings.dtype)
    class_sums = same.to(embeddings.dtype) @ embeddings  # row j: the sum over j's class
    prototypes = class_sums / counts.unsqueeze(1)
    logits = similarity_matrix(embeddings, prototypes, similarity) * scale
    # own class without the row itself (a zero vector when the row is alone: masked below)
    own = (class_sums - embeddings) / (counts - 1).clamp(min=1).unsqueeze(1)
    logits = torch.where(same, _rowwise(embeddings, own, similarity).unsqueeze(1) * scale,
                         logits)
    # one column per class: the first row of each class in the batch
    earlier = torch.ones_like(same).tril(diagonal=-1)
    first = ~(same & earlier).any(dim=1)
    logits = logits.masked_fill(~first.unsqueeze(0), float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    own_log_prob = log_prob.masked_fill(~(same & first.unsqueeze(0)), 0.0).sum(dim=1)
    mean_log_prob = log_prob.masked_fill(~first.unsqueeze(0), 0.0).sum(dim=1) / first.sum()
    per_row = -(1.0 - label_smoothing) * own_log_prob - label_smoothing * mean_log_prob
    return masked_mean(per_row, counts > 1)


def _rowwise(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    """``(n, d), (n, d) -> (n,)``: the similarity of each row of ``a`` with that of ``b``."""
    if similarity == "cosine":
        a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    return (a * b).sum(dim=-1)


class PrototypicalLoss(LabelledLoss):
    """Prototypical loss with label smoothing: every row of a class-labelled batch must be
    nearer its own class's prototype than any other class's.

    Where :class:`~siamtext.losses.SupervisedContrastiveLoss` pulls a row towards each other
    row of its class, this pulls it towards their mean: the training signal is the decision
    a prototype :class:`~siamtext.classify.IntentClassifier` makes at prediction time, and a
    noisy or odd example weighs 1 / K of a prototype instead of a whole positive. Label
    smoothing keeps the softmax from driving the classes ever further apart on a handful of
    examples (see :func:`prototypical_loss`).

    Inputs:
        Rows ``(text, label)`` with integer class ids (``input_format = "labelled"``). Each
        batch needs two classes and rows that share a class: the trainer builds P x K
        class-balanced batches, K = 4 unless told otherwise (a row's own prototype is then the
        mean of 3 others).

    Defaults:
        ``scale=20.0`` on cosine similarities (temperature 0.05, as in
        :class:`~siamtext.losses.SupervisedContrastiveLoss`), ``label_smoothing=0.1``.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: Inverse temperature (> 0).
        label_smoothing: Share of the target spread over the batch's classes, in ``[0, 1)``.
        similarity: ``"cosine"`` or ``"dot"``.
        gather_across_devices: Under data-parallel training, build the prototypes from the
            global batch of every rank. ``None``: on when more than one process trains.

    Raises:
        ValueError: For a non-positive ``scale``, ``label_smoothing`` outside ``[0, 1)`` or an
            unknown ``similarity``; when called, for missing labels, labels of the wrong size
            or not class ids, a batch with a single class, or not one feature group.

    Reference:
        Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017; Szegedy et
        al., "Rethinking the Inception Architecture" (label smoothing), CVPR 2016.

    Related:
        :class:`~siamtext.losses.SupervisedContrastiveLoss` (row to row instead of row to
        class mean).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import PrototypicalLoss
        >>> model = SiamText()
        >>> loss = PrototypicalLoss(model)
        >>> texts = ["reset my password", "forgot my password", "card lost", "lost my card"]
        >>> loss([model.tokenize(texts)], torch.tensor([0, 0, 1, 1])).backward()
    """

    samples_per_class: ClassVar[int] = 4

    def __init__(self, model: SiamText, scale: float = DEFAULT_SCALE,
                 label_smoothing: float = 0.1, similarity: SimilarityName = "cosine",
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.scale = check_scale(scale)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
                or not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.similarity = check_choice(similarity, ("cosine", "dot"), "similarity")

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """The loss of one ``(batch, dim)`` embedding group and its class labels.

        Raises:
            ValueError: If labels are missing, of the wrong size, not class ids, or all the
                same (no other class to tell apart).
        """
        emb, labels = self.labelled_batch(embeddings, labels)
        return prototypical_loss(emb, labels, self.scale, self.label_smoothing,
                                 self.similarity)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "label_smoothing": self.label_smoothing,
                "similarity": self.similarity, **self.gather_config()}
