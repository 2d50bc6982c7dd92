"""CoSENT loss (Su Jianlin, 2022) for pairs with a graded similarity score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from siamtext.losses.base import (
    InputFormat,
    SiamLoss,
    check_embeddings,
    check_labels,
    check_scale,
    readable,
)

if TYPE_CHECKING:
    from siamtext.model import SiamText

#: Su's lambda: cosines in [-1, 1] become logits in [-20, 20].
DEFAULT_SCALE = 20.0


def check_scores(scores: Tensor, loss_name: str) -> Tensor:
    """Return ``scores`` as floats; raise ``ValueError`` naming the rows that are NaN/inf."""
    scores = scores.float() if not scores.is_floating_point() else scores
    if not readable(scores):
        return scores
    bad = (~torch.isfinite(scores)).nonzero().flatten()
    if bad.numel():
        raise ValueError(f"{loss_name}: scores must be finite numbers, got NaN or inf at rows "
                         f"{bad[:10].tolist()}")
    return scores


def cosent_loss(cosines: Tensor, scores: Tensor, scale: float) -> Tensor:
    """CoSENT from the pairs' cosine similarities and their gold scores.

    ``log(1 + sum_{(i, k): score_i > score_k} exp(scale * (cos_k - cos_i)))``: every pair of
    pairs ranked the wrong way round by cosine pays. Ties in the scores impose nothing.

    Args:
        cosines: ``(batch,)`` cosine similarity of each pair.
        scores: ``(batch,)`` gold scores (any scale: only their order matters).
        scale: Multiplies the cosine differences (lambda).

    Returns:
        A scalar; ``log(1) = 0`` when no two scores differ.
    """
    logits = scale * (cosines.unsqueeze(0) - cosines.unsqueeze(1))  # [i, k] = cos_k - cos_i
    ranked = scores.unsqueeze(1) > scores.unsqueeze(0)  # [i, k]: score_i > score_k
    logits = logits.masked_fill(~ranked, float("-inf")).flatten()
    return torch.logsumexp(torch.cat([logits.new_zeros(1), logits]), dim=0)


class CoSENTLoss(SiamLoss):
    """CoSENT: rank the pairs of a batch by cosine similarity in the order of their scores.

    For pairs ``i`` and ``k`` with gold scores ``s_i > s_k``, the loss penalises
    ``cos_k > cos_i``::

        L = log(1 + sum_{s_i > s_k} exp(scale * (cos_k - cos_i)))

    It only uses the order of the scores, so STS-style 0-5 scores, 0-1 scores and 0/1 labels
    all work unchanged, and it trains the same cosine that inference uses (unlike a
    regression of cosine onto the score).

    Inputs:
        Rows ``(sentence1, sentence2, score)`` with a float score
        (``input_format = "pair_score"``): two feature groups and ``(batch,)`` scores.

    Defaults:
        ``scale=20.0``, Su's lambda and sentence-transformers' default: the cosine
        differences lie in [-2, 2] whatever the normalisation, so the logits span
        [-40, 40] and a pair ranked the right way by a cosine gap of about 0.2 already
        costs little (``exp(-4)``). There is no margin to be unattainable.

    Args:
        model: The :class:`siamtext.SiamText` to train.
        scale: The lambda (> 0) multiplying the cosine differences.
        gather_across_devices: Under data-parallel training, score the global batch of every
            rank (see :class:`~siamtext.losses.SiamLoss`). ``None``: on when more than one
            process trains.

    Raises:
        ValueError: For a non-positive ``scale``; when called, for NaN or infinite scores
            (naming the rows), a number of feature groups other than 2, groups of different
            sizes, or scores of the wrong size.

    Reference:
        Su Jianlin, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT",
        https://kexue.fm/archives/8847, 2022.

    Related:
        :class:`~siamtext.losses.ContrastiveLoss` (0/1 labels, a margin),
        :class:`~siamtext.losses.MultipleNegativesRankingLoss` (positive pairs only).

    Examples:
        >>> import torch
        >>> from siamtext import SiamText
        >>> from siamtext.losses import CoSENTLoss
        >>> model = SiamText()
        >>> loss = CoSENTLoss(model)
        >>> features = [model.tokenize(["A man is playing a guitar.", "A cat sleeps."]),
        ...             model.tokenize(["A man plays the guitar.", "A man is cooking."])]
        >>> loss(features, torch.tensor([4.8, 0.2])).backward()
    """

    input_format: ClassVar[InputFormat] = "pair_score"
    compares_rows: ClassVar[bool] = True

    def __init__(self, model: SiamText, scale: float = DEFAULT_SCALE,
                 gather_across_devices: bool | None = None) -> None:
        super().__init__(model, gather_across_devices)
        self.scale = check_scale(scale)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        """CoSENT of two ``(batch, dim)`` groups and the pairs' gold scores.

        Args:
            embeddings: ``[first, second]``, each ``(batch, dim)``.
            labels: ``(batch,)`` gold scores.

        Returns:
            A scalar.
        """
        name = type(self).__name__
        a, b = check_embeddings(embeddings, self.input_format, name)
        scores = check_scores(check_labels(labels, a.shape[0], name, a.device), name)
        return cosent_loss(F.cosine_similarity(a, b, dim=-1), scores, self.scale)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, **self.gather_config()}
