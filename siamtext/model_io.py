"""The model folder: reading a tower's settings and weights from one, and writing one.

A siamtext folder holds the transformer's safetensors weights and config, the tokenizer,
``siamtext_config.json`` (:class:`~siamtext.config.SiamTextConfig`), the
sentence-transformers layout (:mod:`siamtext.st_format`, so ``SentenceTransformer(folder)``
loads it), the model card (:mod:`siamtext.model_card`) and, for an exported model, the
engine's file (:mod:`siamtext.backends`). Loading also accepts a sentence-transformers
folder or a plain transformers checkpoint. :class:`SiamText <siamtext.model.SiamText>`
keeps the public ``save_pretrained`` / ``from_pretrained`` and calls these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers
from transformers import AutoConfig, AutoModel

from siamtext import distributed, st_format
from siamtext.atomic import write_folder
from siamtext.backends import save_engine
from siamtext.config import CONFIG_NAME, SiamTextConfig
from siamtext.failpoints import failpoint
from siamtext.finite import check_finite
from siamtext.model_card import write_model_card

if TYPE_CHECKING:
    from siamtext.model import SiamText

# Encoder-decoder families whose encoder alone is the tower.
_ENCODER_ONLY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


def default_device() -> torch.device:
    """CUDA when available, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def read_settings(folder: Path, name: str | Path) -> tuple[Path, SiamTextConfig]:
    """The transformer's folder and the saved settings of the model in ``folder``.

    Args:
        folder: A siamtext, sentence-transformers or plain transformers folder.
        name: What the caller asked for (a path or Hub id), the base model's name when the
            folder does not record one.

    Returns:
        The folder holding the transformer (a sentence-transformers folder may keep it in
        a sub-folder) and the settings: the folder's own, else its sentence-transformers
        modules', else the defaults.
    """
    if (folder / CONFIG_NAME).is_file():
        return folder, SiamTextConfig.load(folder)
    if st_format.is_sentence_transformers_folder(folder):
        layout = st_format.read_layout(folder)
        return layout.transformer_dir, SiamTextConfig(
            pooling=layout.pooling, normalize=layout.normalize,
            max_length=layout.max_length, base_model=str(name),
        )
    return folder, SiamTextConfig(base_model=str(name))


def load_transformer(folder: Path, trust_remote_code: bool) -> transformers.PreTrainedModel:
    """The transformer of ``folder`` from safetensors weights (the encoder alone for T5-like
    models).

    Raises:
        ValueError: For an unsupported encoder-decoder type, or a weight that holds NaN or
            inf (naming it).
    """
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if getattr(config, "is_encoder_decoder", False):
        cls_name = _ENCODER_ONLY.get(config.model_type)
        if cls_name is None:
            raise ValueError(f"{folder}: encoder-decoder model type {config.model_type!r} is not "
                             f"supported; supported: {sorted(_ENCODER_ONLY)} (encoder only)")
        model = getattr(transformers, cls_name).from_pretrained(folder, use_safetensors=True)
    else:
        model = AutoModel.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    # a diverged run's NaN weights would only show later, as NaN embeddings
    check_finite(model.state_dict().items(), f"refusing to load {folder}", folder)
    return model


def save_folder(model: SiamText, folder: str | Path, *, main_process_only: bool = True) -> Path:
    """Write ``model`` to ``folder`` atomically: :meth:`SiamText.save_pretrained
    <siamtext.model.SiamText.save_pretrained>`, which documents it, calls this.

    The files come from ``model._write_files`` (a subclass adds its own there), written into
    a staging folder that :func:`siamtext.atomic.write_folder` moves into place.
    """
    folder = Path(folder)
    if main_process_only and not distributed.is_main_process():
        return folder
    check_finite(model.transformer.state_dict().items(), f"refusing to save {folder}")
    return write_folder(folder, lambda staging: model._write_files(staging, folder.name))


def write_files(model: SiamText, folder: Path, name: str | None = None) -> None:
    """Write the files of a saved ``model`` straight into the existing ``folder`` (not
    atomic: callers write into a staging folder). ``name``: the final folder's name, for
    the ``save`` failpoint (:mod:`siamtext.failpoints`)."""
    model.transformer.save_pretrained(folder)
    failpoint("save", name or folder.name)
    model.tokenizer.save_pretrained(folder)
    model.config.save(folder)
    import siamtext

    st_format.write_layout(
        folder, pooling=model.config.pooling, normalize=model.config.normalize,
        max_length=model.max_seq_length, dimension=model.embedding_dim,
        versions={"siamtext": siamtext.__version__, "transformers": transformers.__version__,
                  "pytorch": torch.__version__},
    )
    write_model_card(
        folder, model.card_data, embedding_dim=model.embedding_dim,
        max_seq_length=model.max_seq_length, pooling=model.config.pooling,
        normalize=model.config.normalize,
    )
    if model._engine is not None:
        save_engine(model._engine, model.backend, folder)
