"""Embedding distillation loss: a student's embeddings regressed onto its teacher's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from siamtext.losses.base import SiamLoss, check_embeddings
from siamtext.validation import check_choice

if TYPE_CHECKING:
    from siamtext.model import SiamText

DistillMetric = Literal["mse", "cosine"]


def embedding_distillation_loss(student: Tensor, teacher: Tensor,
                                metric: DistillMetric = "mse") -> Tensor:
    """The distance of each student embedding from its teacher embedding, averaged.

    ``"mse"``: ``mean_i mean_d (s_id - t_id)^2``, the mean squared error over every row and
    dimension (Reimers & Gurevych 2020, eq. 1, as ``torch.nn.MSELoss``). ``"cosine"``:
    ``mean_i (1 - cos(s_i, t_i))``, blind to the norms.

    Args:
        student: ``(batch, dim)`` student embeddings.
        teacher: ``(batch, dim)`` teacher embeddings of the same texts.
        metric: ``"mse"`` or ``"cosine"``.

    Returns:
        A scalar.
    """
    if metric == "mse":
        return F.mse_loss(student, teacher)
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


class EmbeddingDistillationLoss(SiamLoss):
    """The student tower's embedding of each text must match the teacher's (precomputed).

    Knowledge distillation for sentence embeddings: no labels, only texts from the user's
    domain and the teacher's embeddings of them, computed once before training and carried
    as a column of the rows (see :func:`siamtext.training.distill.distill`). Each row's loss
    is its own, so under data-parallel training nothing is gathered.

    Inputs:
        Rows ``(text, target)``: one feature group and a ``(batch, dim)`` float tensor of
        teacher embeddings, passed where other losses take labels
        (``input_format = "text_target"``, built by
        :class:`~siamtext.training.distill_trainer.DistillationTrainer`).

    Defaults:
        ``metric="mse"``, the loss of Reimers & Gurevych and of sentence-transformers'
        layer-reduction example. On unit vectors MSE and cosine differ by the norm term
        only (``|s - t|^2 = |s|^2 + |t|^2 - 2 s.t``); ``"cosine"`` ignores the student's
        norm, which matters for a student whose model does not normalise.

    Args:
        model: The student :class:`~siamtext.SiamText`.
        metric: ``"mse"`` or ``"cosine"``.

    Raises:
        ValueError: For an unknown ``metric``; when called, for missing targets or targets
            whose shape differs from the student's embeddings.

    Reference:
        Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using
        Knowledge Distillation", EMNLP 2020; Hinton et al., "Distilling the Knowledge in a
        Neural Network", 2015.

    Related:
        :func:`siamtext.static.distill_static` (a static student, no training).

    Examples:
        >>> student_model = SiamText()
        >>> loss = EmbeddingDistillationLoss(student_model)
        >>> texts = ["reset my password", "card lost"]
        >>> targets = torch.from_numpy(student_model.encode(texts))
        >>> float(loss([student_model.tokenize(texts)], targets)) < 1e-6
        True
    """

    input_format: ClassVar[str] = "text_target"  # type: ignore[assignment]

    def __init__(self, model: SiamText, metric: DistillMetric = "mse") -> None:
        super().__init__(model, gather_across_devices=False)
        self.metric = check_choice(metric, ("mse", "cosine"), "metric")

    def forward(self, features: Sequence[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """Embed the one feature group and return the distance from ``labels`` (the targets).

        Raises:
            ValueError: If there is not exactly one feature group, before embedding.
        """
        if len(features) != 1:
            raise ValueError(f"{type(self).__name__} expects 1 feature group for "
                             f"'text_target' rows (text, teacher embedding), got {len(features)}")
        return self.compute_loss_from_embeddings(self.embed(features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor],
                                     labels: Tensor | None) -> Tensor:
        """The loss of ``[student (batch, dim)]`` against ``labels``, the ``(batch, dim)``
        teacher embeddings."""
        name = type(self).__name__
        if len(embeddings) != 1:
            raise ValueError(f"{name} expects 1 embedding group, got {len(embeddings)}")
        (student,) = check_embeddings(embeddings, "labelled", name)
        if labels is None:
            raise ValueError(f"{name} needs the teacher's embeddings as targets, got None")
        teacher = torch.as_tensor(labels).to(student.device, torch.float32, non_blocking=True)
        if teacher.shape != student.shape:
            raise ValueError(f"{name}: the targets have shape {tuple(teacher.shape)}, the "
                             f"student's embeddings {tuple(student.shape)}; one teacher "
                             "embedding of the same width per row is needed")
        return embedding_distillation_loss(student, teacher, self.metric)

    def get_config_dict(self) -> dict[str, Any]:
        return {"metric": self.metric}
