"""Multiple negatives ranking loss: in-batch negatives with a softmax over similarities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from siamtext.distances import cosine_similarity_matrix
from siamtext.losses.base import (
    InputFormat,
    SiamLoss,
    check_embeddings,
    check_labels,
    check_scale,
)
from siamtext.validation import check_choice

if TYPE_CHECKING:
    from siamtext.model import SiamText

SimilarityName = Literal["cosine", "dot"]
#: Inverse temperature 20 (temperature 0.05): on cosine similarities in [-1, 1] the logits
#: span [-20, 20], sharp enough for the softmax to single out the positive.
DEFAULT_SCALE = 20.0
DEFAULT_SIMILARITY: SimilarityName = "cosine"


def similarity_matrix(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    """``(n, d), (m, d) -> (n, m)`` cosine similarities or dot products."""
    return cosine_similarity_matrix(a, b) if similarity == "cosine" else a @ b.T


def multiple_negatives_ranking_loss(anchors: Tensor, candidates: Tensor, scale: float,
                                    similarity: str = "cosine",
                                    labels: Tensor | None = None) -> Tensor:
    """Cross-entropy of each anchor against all candidates, its own positive being the target.

    Args:
        anchors: ``(batch, dim)``.
        candidates: ``(batch * k, dim)``: the batch's positives (rows ``0..batch-1``, row ``i``
            is anchor ``i``'s positive) followed by any hard-negative columns, column by
            column.
        scale: Multiplies the similarities before the softmax (inverse temperature).
        similarity: ``"cosine"`` or ``"dot"``.
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.
        labels: Optional ``(batch,)`` class ids. Where given, another row's positive that
            shares anchor ``i``'s class is not a negative for ``i`` and is masked out.

    Returns:
        A scalar: the mean cross-entropy over anchors.
    """
    n = anchors.shape[0]
    logits = similarity_matrix(anchors, candidates, similarity) * scale  # (n, n * k)
    if labels is not None:
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        same.fill_diagonal_(False)  # keep each anchor's own positive
        mask = torch.zeros_like(logits, dtype=torch.bool)
        mask[:, :n] = same
        logits = logits.masked_fill(mask, float("-inf"))
    target = torch.arange(n, device=anchors.device)
    return F.cross_entropy(logits, target)


class MultipleNegativesRankingLoss(SiamLoss):
    """In-batch negatives: each anchor must pick its own positive among every positive (and
    hard negative) of the batch.

    For a batch of ``n`` rows, the logits of anchor ``i`` are ``scale * sim(a_i, c_j)`` over
    the candidates ``c``: the ``n`` positives, then the hard negatives of every row. The loss
    is the cross-entropy with target ``j = i`` (InfoNCE). Every other row's positive is a
    free negative, so larger batches give harder training.

    If class ``labels`` are passed, rows of the same class are not used as each other's
    negatives (their positives are masked out of the softmax): this is how labelled intent
    data ``(anchor, positive, class)``, where many rows share a class, avoids false
    negatives. Hard-negative columns are never masked (their class is unknown). Pass
    ``labels=None`` for rows without a class: a placeholder such as all zeros would mark every
    row as the same class (an error when there are no hard-negative columns).

    Inputs:
        Rows ``(anchor, positive)`` or ``(anchor, positive, negative_1, ..., negative_k)``
        (``input_format = "anchor_positive"``): two or more feature groups; ``labels`` is
        ``None`` or ``(batch,)`` class ids.

    Defaults:
        ``scale=20.0``, ``similarity="cosine"``: temperature 0.05 on cosine similarities in
        [-1, 1], the setting of sentence-transformers and of most contrastive sentence
        encoders; on L2-normalised embeddings cosine and dot product coincide. There is no
        margin, so nothing here can be unattainable on unit vectors.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: Inverse temperature (> 0).
        similarity: ``"cosine"`` or ``"dot"``.

    Raises:
        ValueError: For a non-positive ``scale`` or unknown ``similarity``; when called, for
            fewer than two feature groups, groups of different sizes, or labels of the wrong
            size.

    Reference:
        Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply",
        arXiv:1705.00652, 2017; van den Oord, Li and Vinyals, "Representation Learning with
        Contrastive Predictive Coding" (InfoNCE), arXiv:1807.03748, 2018.

    Related:
        :class:`~siamtext.losses.TripletLoss` (one negative, a margin),
        :class:`~siamtext.losses.BatchHardTripletLoss` (class-labelled batches).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import MultipleNegativesRankingLoss
        >>> model = SiamText()
        >>> loss = MultipleNegativesRankingLoss(model)
        >>> features = [model.tokenize(["How do I reset my password?", "Where is my card?"]),
        ...             model.tokenize(["I forgot my password", "I lost my card"])]
        >>> loss(features, None).backward()
    """

    input_format: ClassVar[InputFormat] = "anchor_positive"
    compares_rows: ClassVar[bool] = True

    def __init__(self, model: SiamText, scale: float = DEFAULT_SCALE,
                 similarity: SimilarityName = DEFAULT_SIMILARITY,
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.scale = check_scale(scale)
        self.similarity = check_choice(similarity, ("cosine", "dot"), "similarity")

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """In-batch negatives loss of ``[anchor, positive, *negatives]`` embeddings.

        Args:
            embeddings: Two or more ``(batch, dim)`` tensors.
            labels: ``None``, or ``(batch,)`` class ids to mask same-class negatives.

        Returns:
            A scalar: the mean cross-entropy over anchors.
        """
        name = type(self).__name__
        anchors, *others = check_embeddings(embeddings, self.input_format, name)
        if labels is not None:
            # A batch of one class without hard negatives leaves each anchor only its own
            # positive: its loss is 0 and teaches nothing, but it is a correct value (a
            # sampler can draw such a batch when there are fewer classes than rows in a
            # batch). Data of a single class is refused before training (check_data).
            labels = check_labels(labels, anchors.shape[0], name, anchors.device)
        return multiple_negatives_ranking_loss(anchors, torch.cat(others), self.scale,
                                               self.similarity, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity": self.similarity, **self.gather_config()}
