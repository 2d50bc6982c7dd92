"""Tiny random models for tests and smoke runs: built offline in a second, the same every run.

The suite's fixtures and ``benchmarks/reliability.py`` build their model with these, and so
can the tests of code that uses siamtext:

    >>> from siamtext import SiamText
    >>> from siamtext.testing import tiny_bert
    >>> model = SiamText(tiny_bert(tmp_path / "tiny", ["reset my password", "card lost"]))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def wordpiece_vocab(corpus: Sequence[str], size: int = 400) -> list[str]:
    """A WordPiece vocabulary that is the same every run.

    The special tokens, every character of the corpus alone and as a ``##`` continuation,
    then whole words by frequency (ties in alphabetical order), ``size`` tokens at most.
    Words are split the way BERT splits them (its normaliser, lower-casing, and
    pre-tokeniser). ``tokenizers``' ``WordPieceTrainer`` is not used: it breaks ties between
    equal pair counts in hash-map order, which changes from process to process (six runs on
    the demo utterances gave six vocabularies, and so six different random towers).

    Raises:
        ValueError: If ``size`` cannot hold the special tokens, or ``corpus`` has no text.
    """
    from tokenizers import normalizers, pre_tokenizers

    if isinstance(size, bool) or not isinstance(size, int) or size < len(SPECIAL_TOKENS):
        raise ValueError(f"size must be an int >= {len(SPECIAL_TOKENS)} (the special tokens), "
                         f"got {size!r}")
    if isinstance(corpus, str) or not all(isinstance(t, str) for t in corpus):
        raise ValueError("corpus must be a list of strings")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in corpus
                     for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    if not counts:
        raise ValueError("corpus must hold some text to build a vocabulary from, got none")
    chars = sorted({c for word in counts for c in word})
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    return [*SPECIAL_TOKENS, *chars, *("##" + c for c in chars), *words][:size]


def tiny_bert(folder: str | Path, corpus: Sequence[str], *, vocab_size: int = 400,
              hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a random BERT with a :func:`wordpiece_vocab` of ``corpus`` to ``folder``.

    Two attention heads, a feed-forward of twice ``hidden_size``, 64 positions; the weights
    drawn after ``torch.manual_seed(seed)``. A folder that already holds a ``config.json`` is
    returned as it is.

    Returns:
        ``folder``, loadable by :class:`siamtext.SiamText`.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    vocab = wordpiece_vocab(corpus, size=vocab_size)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file here: pass the vocabulary itself
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=2,
                        intermediate_size=2 * hidden_size, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
