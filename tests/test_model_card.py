"""The model card: metadata the Hub reads, the body, and the card data saved with a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from siamtext.model_card import (
    CARD_DATA_NAME,
    MODEL_ID_PLACEHOLDER,
    ModelCardData,
    build_model_card,
    read_card_data,
    write_model_card,
)

ARCH = {"embedding_dim": 384, "max_seq_length": 256, "pooling": "mean", "normalize": True}
BASE = "sentence-transformers/all-MiniLM-L6-v2"


def trained_card_data() -> ModelCardData:
    data = ModelCardData(base_model=BASE, datasets=["mteb/banking77"], language=["en"],
                         license="apache-2.0", tags=["intent-classification"])
    data.training = {"loss": "BatchHardTripletLoss",
                     "loss_config": {"distance": "cosine", "margin": 0.3},
                     "epochs": 1, "batch_size": 32, "learning_rate": 2e-5, "rows": 10003,
                     "seed": 42}
    data.eval_metrics = {"accuracy": np.float32(0.9375), "f1": 0.91, "broken": float("nan")}
    return data


def render(tmp_path: Path, data: ModelCardData, **kwargs) -> tuple[str, ModelCard]:
    card = build_model_card(data, **{**ARCH, **kwargs})
    card.save(tmp_path / "README.md")
    return card.content, ModelCard.load(tmp_path / "README.md")


def test_metadata_parses_back_with_model_card_load(tmp_path):
    _, loaded = render(tmp_path, trained_card_data(), model_id="alice/banking-minilm")
    meta = loaded.data
    assert meta.library_name == "sentence-transformers"
    assert meta.pipeline_tag == "sentence-similarity"
    assert meta.base_model == BASE
    assert meta.datasets == ["mteb/banking77"]
    assert meta.license == "apache-2.0" and meta.language == ["en"]
    assert meta.tags == ["sentence-transformers", "sentence-similarity", "feature-extraction",
                         "siamese", "siamtext", "intent-classification"]
    assert meta.model_name == "alice/banking-minilm"
    results = {r.metric_type: r.metric_value for r in meta.eval_results}
    assert results == {"accuracy": 0.9375, "f1": 0.91}  # NaN left out, float32 made plain
    assert {r.dataset_type for r in meta.eval_results} == {"mteb/banking77"}
    assert {r.task_type for r in meta.eval_results} == {"sentence-similarity"}


def test_body_has_setup_results_and_usage(tmp_path):
    text, _ = render(tmp_path, trained_card_data(), model_id="alice/banking-minilm")
    for line in ("| Loss | BatchHardTripletLoss |",
                 "| Loss parameters | distance=cosine, margin=0.3 |", "| Epochs | 1 |",
                 "| Batch size per device | 32 |", "| Learning rate | 2e-05 |",
                 "| Training rows | 10003 |", "| seed | 42 |", "| accuracy | 0.9375 |",
                 "| f1 | 0.9100 |", "- **Embedding dimension:** 384",
                 "- **Maximum sequence length:** 256 tokens", "- **Pooling:** mean",
                 'model = SiamText("alice/banking-minilm")',
                 'model = SentenceTransformer("alice/banking-minilm")',
                 f"fine-tuned from [{BASE}](https://huggingface.co/{BASE})"):
        assert line in text, line
    assert "broken" not in text


def test_local_base_model_is_not_declared_on_the_hub(tmp_path):
    local = str(tmp_path)  # a path, not a Hub id: the Hub would reject it as base_model
    text, loaded = render(tmp_path, ModelCardData(base_model=local))
    assert loaded.data.base_model is None
    assert f"- **Base model:** {local}" in text
    assert loaded.data.eval_results is None  # no metrics, no model-index
    assert "## Training" not in text and "## Evaluation" not in text


def test_placeholder_model_id_until_pushed(tmp_path):
    text, loaded = render(tmp_path, trained_card_data())
    assert f'SiamText("{MODEL_ID_PLACEHOLDER}")' in text
    assert loaded.data.model_name == MODEL_ID_PLACEHOLDER


def test_classifier_card_uses_its_pipeline_tag_library_and_usage(tmp_path):
    usage = f'```python\nclf = IntentClassifier.load("{MODEL_ID_PLACEHOLDER}")\n```'
    text, loaded = render(tmp_path, trained_card_data(), pipeline_tag="text-classification",
                          library_name="siamtext", model_id="alice/intents", usage=usage,
                          description="Predicts one of 77 banking intents.")
    assert loaded.data.pipeline_tag == "text-classification"
    assert loaded.data.library_name == "siamtext"
    assert "sentence-transformers" not in loaded.data.tags and "siamese" in loaded.data.tags
    assert {r.task_type for r in loaded.data.eval_results} == {"text-classification"}
    assert "Predicts one of 77 banking intents." in text
    assert 'IntentClassifier.load("alice/intents")' in text
    assert "SentenceTransformer(" not in text


def test_build_model_card_rejects_other_card_data():
    with pytest.raises(TypeError, match="card_data must be a siamtext ModelCardData, got dict"):
        build_model_card({"base_model": BASE}, **ARCH)  # type: ignore[arg-type]


def test_training_history_accumulates(tmp_path):
    data = trained_card_data()
    first = dict(data.training)
    data.training = dict(first)  # the same set-up again: not a new run
    assert data.training_history == []
    data.training = {"loss": "CoSENTLoss", "epochs": 2, "rows": 5749}
    assert data.training_history == [first]
    data.save(tmp_path)
    again = ModelCardData.load(tmp_path)
    assert again.training_history == [first] and again.training["loss"] == "CoSENTLoss"
    again.training = {"loss": "ContrastiveLoss"}
    assert [run["loss"] for run in again.training_history] == ["BatchHardTripletLoss",
                                                               "CoSENTLoss"]
    text, _ = render(tmp_path, again)
    assert "### Earlier training run 2" in text and "| Loss | CoSENTLoss |" in text


def test_card_data_json_round_trip(tmp_path):
    data = trained_card_data()
    path = data.save(tmp_path)
    assert path == tmp_path / CARD_DATA_NAME
    raw = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert raw["eval_metrics"] == {"accuracy": 0.9375, "f1": 0.91, "broken": None}
    raw["added_by_a_later_version"] = 1
    path.write_text(json.dumps(raw))
    loaded = ModelCardData.load(tmp_path)
    assert loaded.training == data.training and loaded.datasets == data.datasets
    assert read_card_data(tmp_path) == loaded


def test_read_card_data_without_file_is_fresh(tmp_path):
    assert read_card_data(tmp_path, base_model=BASE) == ModelCardData(base_model=BASE)
    with pytest.raises(FileNotFoundError):
        ModelCardData.load(tmp_path)


def test_write_model_card_writes_readme_and_json(tmp_path):
    path = write_model_card(tmp_path, trained_card_data(), model_id="alice/x", **ARCH)
    assert path == tmp_path / "README.md"
    assert ModelCard.load(path).data.base_model == BASE
    assert ModelCardData.load(tmp_path).base_model == BASE


def test_card_holds_the_metrics_of_a_tiny_training_run(tiny_bert_dir, tmp_path):
    training = pytest.importorskip("siamtext.training")
    from siamtext import SiamText

    model = SiamText(tiny_bert_dir, device="cpu")
    pairs = [("where is my card", "my card has not arrived", 1),
             ("where is my card", "play some jazz", 0),
             ("cancel my subscription", "stop my plan please", 1),
             ("cancel my subscription", "what is the weather", 0)] * 4
    rows = {"sentence1": [a for a, _, _ in pairs], "sentence2": [b for _, b, _ in pairs],
            "label": [y for _, _, y in pairs]}
    training.fit(model, rows, loss="ContrastiveLoss", eval_dataset=rows, epochs=1,
                 batch_size=8, show_progress=False, report_to=[])
    data = model.card_data
    assert data.training["loss"] == "ContrastiveLoss" and data.training["rows"] == 16
    assert data.training["batch_size"] == 8 and data.training["epochs"] == 1
    assert "eval_loss" in data.eval_metrics
    _, loaded = render(tmp_path, data, model_id="alice/tiny")
    results = {r.metric_type: r.metric_value for r in loaded.data.eval_results}
    assert results["eval_loss"] == pytest.approx(data.eval_metrics["eval_loss"], abs=1e-6)
