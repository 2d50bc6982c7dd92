"""What a model card says about a model, and the card itself (``README.md``).

``ModelCardData`` holds the facts: filled in by training and evaluation, kept on
``SiamText.card_data`` and saved next to the weights as ``siamtext_card.json``, so that they
survive ``save_pretrained`` / ``from_pretrained`` and a model fine-tuned twice lists both runs.
``build_model_card`` renders them into a Hugging Face ``ModelCard``: YAML metadata the Hub
reads (library, base model, tags, pipeline, datasets, license, ``model-index``) and a body
with the architecture, the training set-up, the evaluation results and usage snippets.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

CARD_DATA_NAME = "siamtext_card.json"
README_NAME = "README.md"
# Stands for the Hub id in a card saved locally; replaced by the repo id when pushed.
MODEL_ID_PLACEHOLDER = "siamtext_model_id"
DEFAULT_TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction",
                "siamese", "siamtext")
# `library_name` is sentence-transformers: every folder siamtext saves is a valid
# sentence-transformers folder, and the Hub only wires its sentence-similarity widget, its
# "Use this model" snippet and its download counter for libraries it knows.
LIBRARY_NAME = "sentence-transformers"

# Keys of `training` shown first, in this order, with these labels.
_TRAINING_LABELS = {
    "loss": "Loss", "loss_params": "Loss parameters", "loss_config": "Loss parameters",
    "epochs": "Epochs",
    "batch_size": "Batch size per device", "world_size": "Processes",
    "global_batch_size": "Global batch size", "learning_rate": "Learning rate",
    "rows": "Training rows",
    "num_rows": "Training rows", "train_rows": "Training rows",
}


@dataclass
class ModelCardData:
    """Facts for the model card, kept on ``SiamText.card_data`` and saved with the model.

    Assigning a new ``training`` keeps the previous one at the end of ``training_history``,
    so the provenance of a model fine-tuned more than once accumulates.

    Attributes:
        base_model: Hub id or path the weights were first loaded from.
        datasets: Names of the training datasets (Hub dataset ids where there are).
        language: ISO codes of the languages, e.g. ``["en"]``.
        license: SPDX id of the model's license.
        training: The training set-up (loss and its parameters, epochs, batch size, learning
            rate, number of rows), set by the trainer.
        eval_metrics: Metric name -> value from the latest evaluation.
        tags: Extra Hub tags.
        eval_dataset: Name of the dataset ``eval_metrics`` were measured on (default: the
            first of ``datasets``).
        training_history: Earlier training set-ups, oldest first.
    """

    base_model: str | None = None
    datasets: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    license: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    eval_dataset: str | None = None
    training_history: list[dict[str, Any]] = field(default_factory=list)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "training":
            previous = getattr(self, "training", None)
            if previous and value is not previous and value != previous:
                self.training_history.append(previous)
        super().__setattr__(name, value)

    def to_dict(self) -> dict[str, Any]:
        """The data as plain JSON types (numpy numbers become floats, odd objects strings)."""
        return _jsonable(asdict(self))

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/siamtext_card.json`` and return its path."""
        path = Path(folder) / CARD_DATA_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelCardData:
        """Read ``folder/siamtext_card.json``, ignoring keys this version does not know.

        Raises:
            FileNotFoundError: If the folder has no ``siamtext_card.json``.
        """
        data = json.loads((Path(folder) / CARD_DATA_NAME).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_card_data(folder: str | Path, *, base_model: str | None = None) -> ModelCardData:
    """The card data saved in ``folder``, or fresh data naming ``base_model`` if none is."""
    if (Path(folder) / CARD_DATA_NAME).is_file():
        return ModelCardData.load(folder)
    return ModelCardData(base_model=base_model)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _hub_id(name: str | None) -> str | None:
    """``name`` if it reads as a Hub model id rather than a local path, else None."""
    from siamtext.resolve import is_repo_id

    if not name or Path(name).expanduser().exists() or not is_repo_id(name):
        return None
    return name


def _metric_values(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        value = _jsonable(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[str(name)] = round(float(value), 6)
    return out


def _fmt(value: Any) -> str:
    value = _jsonable(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _training_rows(training: dict[str, Any]) -> list[tuple[str, str]]:
    rows, seen = [], set()
    for key, label in _TRAINING_LABELS.items():
        if key in training and label not in seen:
            rows.append((label, _fmt(training[key])))
            seen.add(label)
    rows += [(str(k), _fmt(v)) for k, v in training.items() if k not in _TRAINING_LABELS]
    return rows


def _bullets(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"- **{a}:** {b}" for a, b in rows)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def _versions() -> str:
    parts = []
    for dist in ("siamtext", "transformers", "torch", "huggingface_hub", "sentence-transformers"):
        try:
            parts.append(f"- {dist}: {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return "\n".join(parts)


def _usage(model_id: str) -> str:
    siamtext_snippet = f'''```python
from siamtext import SiamText

model = SiamText("{model_id}")
embeddings = model.encode(["How do I reset my password?", "I forgot my password"])
print(embeddings.shape)  # (2, dimension)
print(model.similarity(embeddings, embeddings))  # cosine similarities
```'''
    st_snippet = f'''```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{model_id}")
embeddings = model.encode(["How do I reset my password?", "I forgot my password"])
print(model.similarity(embeddings, embeddings))
```'''
    return (f"## Usage\n\n### siamtext\n\n```bash\npip install siamtext\n```\n\n"
            f"{siamtext_snippet}\n\n### sentence-transformers\n\nThe folder is also a "
            f"sentence-transformers model and gives the same embeddings:\n\n{st_snippet}")


def build_model_card(
    card_data: ModelCardData,
    *,
    model_id: str | None = None,
    embedding_dim: int,
    max_seq_length: int,
    pooling: str,
    normalize: bool,
    pipeline_tag: str = "sentence-similarity",
    library_name: str = LIBRARY_NAME,
    description: str | None = None,
    usage: str | None = None,
):
    """Render the model card (``README.md``) of a saved model.

    Args:
        card_data: The facts: base model, datasets, license, training set-up, metrics.
        model_id: The Hub id the card is for; ``None`` writes a placeholder that
            :func:`siamtext.hub.push_folder_to_hub` replaces with the repo id.
        embedding_dim: Size of the sentence embeddings.
        max_seq_length: Longest input in tokens.
        pooling: ``"mean"``, ``"cls"`` or ``"max"``.
        normalize: Whether embeddings are L2-normalised.
        pipeline_tag: Hub pipeline tag (``"text-classification"`` for a classifier).
        library_name: Hub library; ``"siamtext"`` for folders sentence-transformers cannot
            load as a whole (a classifier with its encoder in a subfolder).
        description: A paragraph placed under the title, e.g. what a classifier predicts.
        usage: Markdown for the Usage section instead of the siamtext and
            sentence-transformers encoder snippets; ``MODEL_ID_PLACEHOLDER`` in it becomes
            the repo id on push.

    Returns:
        A ``huggingface_hub.ModelCard``; ``card.save(path)`` writes it, and
        ``ModelCard.load(path)`` parses it back.

    Raises:
        TypeError: If ``card_data`` is not a :class:`ModelCardData`.
    """
    from huggingface_hub import EvalResult, ModelCard
    from huggingface_hub import ModelCardData as HubCardData

    if not isinstance(card_data, ModelCardData):
        raise TypeError("card_data must be a siamtext ModelCardData, got "
                        f"{type(card_data).__name__}")
    model_id = model_id or MODEL_ID_PLACEHOLDER
    base_model = _hub_id(card_data.base_model)
    metrics = _metric_values(card_data.eval_metrics)
    eval_dataset = card_data.eval_dataset or (card_data.datasets[0] if card_data.datasets
                                              else "evaluation-set")
    eval_results = [
        EvalResult(task_type=pipeline_tag, dataset_type=eval_dataset, dataset_name=eval_dataset,
                   metric_type=name, metric_name=name, metric_value=value)
        for name, value in metrics.items()
    ]
    tags = [t for t in DEFAULT_TAGS if t != LIBRARY_NAME or library_name == LIBRARY_NAME]
    tags = list(dict.fromkeys([*tags, *card_data.tags]))
    hub_data = HubCardData(
        library_name=library_name, base_model=base_model, tags=tags, pipeline_tag=pipeline_tag,
        datasets=list(card_data.datasets) or None, language=list(card_data.language) or None,
        license=card_data.license, model_name=model_id, eval_results=eval_results or None,
    )

    source = (f"fine-tuned from [{base_model}](https://huggingface.co/{base_model})"
              if base_model and card_data.training else
              f"based on [{base_model}](https://huggingface.co/{base_model})" if base_model
              else "built")
    intro = (f"This is a [siamtext](https://pypi.org/project/siamtext/) model {source}. It maps "
             f"sentences to a {embedding_dim}-dimensional vector space, where a Siamese network "
             "compares them: semantic similarity, duplicate detection, intent classification, "
             "clustering and search.")
    details = [
        ("Base model", f"[{base_model}](https://huggingface.co/{base_model})" if base_model
         else _fmt(card_data.base_model or "unknown")),
        ("Maximum sequence length", f"{max_seq_length} tokens"),
        ("Embedding dimension", str(embedding_dim)),
        ("Pooling", pooling), ("Normalised embeddings", "yes" if normalize else "no"),
        ("Similarity function", "cosine"),
    ]
    if card_data.datasets:
        details.append(("Training datasets", _fmt(card_data.datasets)))
    if card_data.language:
        details.append(("Language", _fmt(card_data.language)))
    if card_data.license:
        details.append(("License", card_data.license))

    sections = [f"# {model_id}", intro]
    if description:
        sections.append(description)
    usage_section = (f"## Usage\n\n{usage.strip().replace(MODEL_ID_PLACEHOLDER, model_id)}"
                     if usage else _usage(model_id))
    sections += ["## Model details", _bullets(details), usage_section]
    if card_data.training:
        sections += ["## Training", "### Set-up",
                     _table(("Setting", "Value"), _training_rows(card_data.training))]
    for i, run in enumerate(card_data.training_history, start=1):
        sections += [f"### Earlier training run {i}", _table(("Setting", "Value"),
                                                             _training_rows(run))]
    if metrics:
        sections += ["## Evaluation", f"Measured on {eval_dataset} during training.",
                     _table(("Metric", "Value"), [(k, f"{v:.4f}") for k, v in metrics.items()])]
    sections += ["## Framework versions", _versions()]
    body = "\n\n".join(sections) + "\n"
    return ModelCard(f"---\n{hub_data.to_yaml()}\n---\n\n{body}")


def write_model_card(folder: str | Path, card_data: ModelCardData, **kwargs: Any) -> Path:
    """Save ``card_data`` as ``siamtext_card.json`` and the rendered card as ``README.md``.

    Args:
        folder: The saved model's folder.
        card_data: The facts to keep and render.
        **kwargs: Passed to :func:`build_model_card`.

    Returns:
        The path of ``README.md``.
    """
    folder = Path(folder)
    card_data.save(folder)
    path = folder / README_NAME
    build_model_card(card_data, **kwargs).save(path)
    return path
