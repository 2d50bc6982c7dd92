"""Supervised contrastive loss: in-batch negatives for class-labelled rows (text, label)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from siamtext.losses.base import LabelledLoss, check_scale, masked_mean
from siamtext.losses.batch_triplet import label_masks
from siamtext.losses.in_batch import DEFAULT_SCALE, SimilarityName, similarity_matrix
from siamtext.validation import check_choice

if TYPE_CHECKING:
    from siamtext.model import SiamText


def supervised_contrastive_loss(similarities: Tensor, labels: Tensor, scale: float) -> Tensor:
    """Supervised contrastive loss from a similarity matrix (SupCon's ``L_out``).

    Row ``i`` is an anchor; every other row is a candidate. For each positive ``p`` of ``i``
    (``p != i`` with ``i``'s label) the term is the cross-entropy of picking ``p`` among all
    candidates: ``log sum_{a != i} exp(scale * s_ia) - scale * s_ip``. An anchor's terms are
    averaged over its positives, then the anchors that have a positive are averaged; with
    none, the loss is 0 (attached to the graph).

    Args:
        similarities: ``(batch, batch)`` similarities between the batch's embeddings.
        labels: ``(batch,)`` class ids.
        scale: Inverse temperature applied to the similarities.
    """
    positive, _ = label_masks(labels)
    counts = positive.sum(dim=1)
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    logits = (similarities * scale).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_anchor = -log_prob.masked_fill(~positive, 0.0).sum(dim=1) / counts.clamp(min=1)
    return masked_mean(per_anchor, counts > 0)


class SupervisedContrastiveLoss(LabelledLoss):
    """Supervised contrastive loss: every row of a class-labelled batch must pick out the
    rows of its own class among all the others.

    The in-batch-negatives loss for labelled data. Where
    :class:`~siamtext.losses.MultipleNegativesRankingLoss` gives each anchor one positive,
    here every same-class row is a positive and every other row a negative, so a P x K batch
    of ``n`` rows trains on all ``n (K - 1)`` positive pairs at once, each against the
    ``n - K`` rows of other classes (see :func:`supervised_contrastive_loss`). Nothing is
    mined: easy pairs contribute little because the softmax is already confident, hard ones
    dominate the gradient.

    Inputs:
        Rows ``(text, label)`` with integer class ids (``input_format = "labelled"``): one
        feature group and a ``(batch,)`` label tensor. Each batch needs at least two classes
        and, to have positives, at least two rows of some class: the trainer builds P x K
        class-balanced batches for this format, K = 2 unless told otherwise (see
        :attr:`samples_per_class`).

    Defaults:
        ``scale=20.0``, ``similarity="cosine"``: temperature 0.05 on cosine similarities, the
        same as :class:`~siamtext.losses.MultipleNegativesRankingLoss`; Khosla et al. use
        0.1 with far larger batches. There is no margin to be unattainable on unit vectors.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: Inverse temperature (> 0).
        similarity: ``"cosine"`` or ``"dot"``.
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.

    Raises:
        ValueError: For a non-positive ``scale`` or unknown ``similarity``; when called, for
            missing labels, labels of the wrong size or not class ids, a batch with a single
            class (no negatives possible), or more or fewer than one feature group.

    Reference:
        Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (``L_out``, eq. 2).

    Related:
        :class:`~siamtext.losses.MultipleNegativesRankingLoss` (one positive per anchor),
        :class:`~siamtext.losses.BatchHardTripletLoss` (a margin, one triplet per anchor).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import SupervisedContrastiveLoss
        >>> model = SiamText()
        >>> loss = SupervisedContrastiveLoss(model)
        >>> texts = ["reset my password", "forgot my password", "card lost", "lost my card"]
        >>> loss([model.tokenize(texts)], torch.tensor([0, 0, 1, 1])).backward()
    """

    #: Two rows per class: a batch of 32 then holds 16 classes, so each row meets 30
    #: negatives from 15 classes. Measured with all-MiniLM-L6-v2 on Banking77 (1 epoch,
    #: lr 5e-5): K = 2 gave 1-NN 92.69 where K = 4 (8 classes per batch) gave 91.79.
    samples_per_class: ClassVar[int] = 2

    def __init__(self, model: SiamText, scale: float = DEFAULT_SCALE,
                 similarity: SimilarityName = "cosine",
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.scale = check_scale(scale)
        self.similarity = check_choice(similarity, ("cosine", "dot"), "similarity")

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """The loss of one ``(batch, dim)`` embedding group and its class labels.

        Args:
            embeddings: ``[embeddings]``, one ``(batch, dim)`` tensor.
            labels: ``(batch,)`` integer class ids.

        Returns:
            A scalar.

        Raises:
            ValueError: If labels are missing, of the wrong size, not class ids, or all the
                same (no negatives).
        """
        emb, labels = self.labelled_batch(embeddings, labels)
        return supervised_contrastive_loss(similarity_matrix(emb, emb, self.similarity),
                                           labels, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity": self.similarity, **self.gather_config()}
