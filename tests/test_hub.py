"""push_to_hub against a local fake of the Hub's HTTP API, and the checks made before it.

The fake answers the endpoints huggingface_hub 2.x calls for ``create_repo``,
``create_branch``, ``upload_folder`` (preupload, commit, validate-yaml on the legacy path) and
pull requests, records every request, and keeps the committed files, so the tests can rebuild
the uploaded repo and load it in sentence-transformers.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
import pytest
from huggingface_hub import constants

from siamtext import SiamText
from siamtext.hub import HubMixin, push_folder_to_hub
from siamtext.model_card import (
    CARD_DATA_NAME,
    MODEL_ID_PLACEHOLDER,
    ModelCardData,
    read_card_data,
    write_model_card,
)
from siamtext.resolve import resolve_model_path

TOKEN = "hf_fake_token_for_tests"
SENTENCES = ["where is my new card", "I lost my card yesterday", "play some jazz", ""]

if issubclass(SiamText, HubMixin):  # model.py carries the Hub integration
    HubSiamText = SiamText
else:  # prototype of the integration proposed for model.py

    class HubSiamText(HubMixin, SiamText):  # type: ignore[no-redef]
        def __init__(self, model_name_or_path, **kwargs):
            super().__init__(model_name_or_path, **kwargs)
            self.card_data = read_card_data(resolve_model_path(model_name_or_path),
                                            base_model=self.config.base_model)

        def save_pretrained(self, folder):
            folder = super().save_pretrained(folder)
            write_model_card(folder, self.card_data, embedding_dim=self.embedding_dim,
                             max_seq_length=self.max_seq_length, pooling=self.config.pooling,
                             normalize=self.config.normalize)
            return folder


class FakeHub:
    """Records requests; stores committed files per (repo, revision)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.telemetry: list[dict] = []
        self.commits: list[dict] = []
        self.existing: set[str] = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests]

    def files(self, commit: int = -1) -> dict[str, bytes]:
        return self.commits[commit]["files"]

    def rebuild(self, folder: Path, commit: int = -1) -> Path:
        for path, data in self.files(commit).items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        return folder

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _reply(self, status: int, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = {"method": method, "path": unquote(url.path),
                          "query": parse_qs(url.query), "headers": dict(self.headers),
                          "body": body}
                if record["path"] == "/api/agent-harnesses":  # huggingface_hub telemetry
                    hub.telemetry.append(record)
                else:
                    hub.requests.append(record)
                try:
                    status, payload = hub.answer(record)
                except Exception as err:  # a bug in the fake: make the test fail loudly
                    status, payload = 500, {"error": repr(err)}
                self._reply(status, payload)

        return Handler

    def answer(self, r: dict) -> tuple[int, object]:
        path, parts = r["path"], r["path"].strip("/").split("/")
        if path == "/api/repos/create":
            data = json.loads(r["body"])
            repo = f"{data.get('organization') or 'testuser'}/{data['name']}"
            if repo in self.existing:
                return 409, {"error": "You already created this model repo"}
            self.existing.add(repo)
            return 200, {"url": f"{self.url}/{repo}"}
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if parts[:2] == ["api", "models"] and "preupload" in parts:
            files = json.loads(r["body"])["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                    "shouldIgnore": False, "oid": None} for f in files]}
        if parts[:2] == ["api", "models"] and "branch" in parts:
            return 200, {}
        if parts[:2] == ["api", "models"] and "commit" in parts:
            i = parts.index("commit")
            repo, revision = "/".join(parts[2:i]), "/".join(parts[i + 1:])
            lines = [json.loads(x) for x in r["body"].splitlines() if x.strip()]
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"])
                     for x in lines if x["key"] == "file"}
            other = [x["key"] for x in lines if x["key"] not in ("header", "file")]
            header = lines[0]["value"]
            oid = f"{len(self.commits) + 1:040x}"
            self.commits.append({"repo": repo, "revision": revision, "files": files,
                                 "other": other, "message": header["summary"]})
            return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid,
                         "pullRequestUrl": f"{self.url}/{repo}/discussions/1"}
        if parts[:2] == ["api", "models"] and parts[-1] == "discussions":
            return 200, {"num": 1}
        if parts[:2] == ["api", "models"] and "discussions" in parts:
            repo = "/".join(parts[2:parts.index("discussions")])
            return 200, {"title": "pr", "num": 1, "createdAt": "2026-01-01T00:00:00.000Z",
                         "status": "draft", "repo": {"name": repo, "type": "model"},
                         "isPullRequest": True, "changes": {"base": "refs/heads/main"},
                         "filesWithConflicts": [], "events": [],
                         "author": {"name": "testuser"}}
        return 404, {"error": f"fake hub does not know {r['method']} {path}"}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake = FakeHub()
    fake.thread.start()
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "harnesses.json"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))


@pytest.fixture(scope="module")
def hub_model(tiny_bert_dir: Path):
    model = HubSiamText(tiny_bert_dir, device="cpu")
    model.card_data.datasets = ["mteb/banking77"]
    model.card_data.training = {"loss": "ContrastiveLoss", "loss_params": {"margin": 0.5},
                                "epochs": 1, "batch_size": 16, "learning_rate": 2e-5,
                                "rows": 120}
    model.card_data.eval_metrics = {"cosine_accuracy": 0.75}
    return model


@pytest.fixture(scope="module")
def saved_dir(hub_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hub_model.save_pretrained(tmp_path_factory.mktemp("saved"))


EXPECTED_FILES = {
    "model.safetensors", "config.json", "siamtext_config.json", "modules.json",
    "sentence_bert_config.json", "1_Pooling/config.json", "config_sentence_transformers.json",
    "README.md", CARD_DATA_NAME, "tokenizer_config.json",
}


def test_push_to_hub_uploads_the_saved_model(hub, hub_model):
    url = hub_model.push_to_hub("alice/tiny-siamtext")

    assert hub.paths() == ["POST /api/repos/create", "POST /api/validate-yaml",
                           "POST /api/models/alice/tiny-siamtext/preupload/main",
                           "POST /api/models/alice/tiny-siamtext/commit/main"]
    assert all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    create = json.loads(hub.requests[0]["body"])
    assert create == {"name": "tiny-siamtext", "organization": "alice", "visibility": "public",
                      "type": "model"}
    commit = hub.commits[0]
    assert url == f"{hub.url}/alice/tiny-siamtext/commit/{1:040x}"
    assert commit["message"] == "Upload siamtext model" and commit["other"] == []
    files = set(commit["files"])
    assert EXPECTED_FILES <= files, EXPECTED_FILES - files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    readme = commit["files"]["README.md"].decode()
    assert 'SiamText("alice/tiny-siamtext")' in readme
    assert 'SentenceTransformer("alice/tiny-siamtext")' in readme
    assert MODEL_ID_PLACEHOLDER not in readme


def test_pushed_repo_loads_in_sentence_transformers_with_same_embeddings(
        hub, hub_model, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    hub_model.push_to_hub("alice/tiny-siamtext")
    repo = hub.rebuild(tmp_path / "repo")
    ours = hub_model.encode(SENTENCES)
    theirs = st.SentenceTransformer(str(repo), device="cpu").encode(SENTENCES)
    assert theirs.shape == ours.shape
    assert np.abs(theirs - ours).max() < 1e-5
    again = HubSiamText(repo, device="cpu")  # and back in siamtext, card data included
    assert np.abs(again.encode(SENTENCES) - ours).max() < 1e-5
    assert again.card_data.eval_metrics == {"cosine_accuracy": 0.75}


def test_push_folder_with_options(hub, saved_dir):
    url = push_folder_to_hub(saved_dir, "alice/tiny", private=True, revision="v1",
                             commit_message="First version", token="hf_explicit")
    assert hub.paths() == ["POST /api/repos/create", "POST /api/models/alice/tiny/branch/v1",
                           "POST /api/validate-yaml",
                           "POST /api/models/alice/tiny/preupload/v1",
                           "POST /api/models/alice/tiny/commit/v1"]
    assert json.loads(hub.requests[0]["body"])["visibility"] == "private"
    assert all(r["headers"]["authorization"] == "Bearer hf_explicit" for r in hub.requests)
    assert hub.commits[0]["message"] == "First version"
    assert url.endswith(f"/alice/tiny/commit/{1:040x}")
    # the saved folder itself is untouched: its README keeps the placeholder
    assert MODEL_ID_PLACEHOLDER in (saved_dir / "README.md").read_text(encoding="utf-8")


def test_push_without_namespace_uses_the_repo_the_hub_created(hub, saved_dir):
    url = push_folder_to_hub(saved_dir, "tiny")
    assert hub.commits[0]["repo"] == "testuser/tiny"
    assert 'SiamText("testuser/tiny")' in hub.files()["README.md"].decode()
    assert "/testuser/tiny/commit/" in url


def test_push_create_pr_returns_the_pull_request(hub, saved_dir):
    url = push_folder_to_hub(saved_dir, "alice/tiny", create_pr=True)
    assert url == f"{hub.url}/alice/tiny/discussions/1"
    assert "POST /api/models/alice/tiny/discussions" in hub.paths()
    assert hub.commits[0]["revision"] == "refs/pr/1"


def test_push_legacy_path_without_xet(hub, saved_dir, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    url = push_folder_to_hub(saved_dir, "alice/tiny", create_pr=True)
    assert hub.paths() == ["POST /api/repos/create", "POST /api/validate-yaml",
                           "POST /api/validate-yaml",  # upload_folder, then create_commit
                           "POST /api/models/alice/tiny/preupload/main",
                           "POST /api/models/alice/tiny/commit/main"]
    assert hub.requests[-1]["query"] == {"create_pr": ["1"]}
    validated = json.loads(hub.requests[1]["body"])["content"]
    assert validated.startswith("---\n") and "alice/tiny" in validated
    assert url == f"{hub.url}/alice/tiny/discussions/1"
    assert EXPECTED_FILES <= set(hub.files())


def test_push_to_existing_repo_with_exist_ok_false_fails(hub, saved_dir):
    from huggingface_hub.errors import HfHubHTTPError

    push_folder_to_hub(saved_dir, "alice/tiny")
    with pytest.raises(HfHubHTTPError, match="409"):
        push_folder_to_hub(saved_dir, "alice/tiny", exist_ok=False)
    assert len(hub.commits) == 1


# ---------------------------------------------------------------- errors before any upload
@pytest.mark.parametrize("repo_id", ["a/b/c", "bad--id", "-leading", "name.git", "", "white space"])
def test_invalid_repo_id_uploads_nothing(hub, hub_model, saved_dir, repo_id):
    with pytest.raises(ValueError, match="repo_id"):
        push_folder_to_hub(saved_dir, repo_id)
    with pytest.raises(ValueError, match="repo_id"):
        hub_model.push_to_hub(repo_id)
    assert hub.requests == []


def test_repo_id_must_be_a_string(hub, saved_dir):
    with pytest.raises(ValueError, match="repo_id must be a non-empty string"):
        push_folder_to_hub(saved_dir, None)  # type: ignore[arg-type]
    assert hub.requests == []


def test_no_token_uploads_nothing(hub, no_token, hub_model, saved_dir):
    with pytest.raises(ValueError, match="no Hugging Face token found"):
        push_folder_to_hub(saved_dir, "alice/tiny")
    with pytest.raises(ValueError, match="no Hugging Face token found"):
        hub_model.push_to_hub("alice/tiny")
    with pytest.raises(ValueError, match="token=False"):
        push_folder_to_hub(saved_dir, "alice/tiny", token=False)
    assert hub.requests == []


def test_token_from_the_saved_login_is_used(hub, no_token, saved_dir, tmp_path, monkeypatch):
    (tmp_path / "token").write_text("hf_from_file\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    push_folder_to_hub(saved_dir, "alice/tiny")
    assert hub.requests[0]["headers"]["authorization"] == "Bearer hf_from_file"


def _write_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))


def test_folder_that_is_not_a_model_uploads_nothing(hub, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        push_folder_to_hub(tmp_path / "missing", "alice/tiny")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        push_folder_to_hub(tmp_path / "file.txt", "alice/tiny")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a saved model: no model.safetensors weights and "
                                         "no config.json"):
        push_folder_to_hub(empty, "alice/tiny")
    (empty / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a saved model: no model.safetensors weights"):
        push_folder_to_hub(empty, "alice/tiny")
    weights_only = tmp_path / "weights_only"
    weights_only.mkdir()
    _write_weights(weights_only)
    with pytest.raises(ValueError, match="not a saved model: no config.json"):
        push_folder_to_hub(weights_only, "alice/tiny")
    assert hub.requests == []


@pytest.mark.parametrize("name", ["pytorch_model.bin", "head.pkl", "sub/model.pt", "clf.joblib"])
def test_folder_with_pickles_uploads_nothing(hub, tmp_path, name):
    _write_weights(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match=f"pickled files \\({name}\\)"):
        push_folder_to_hub(tmp_path, "alice/tiny")
    assert hub.requests == []


def test_bad_options_upload_nothing(hub, saved_dir):
    with pytest.raises(ValueError, match="create_pr=True .* do not pass revision"):
        push_folder_to_hub(saved_dir, "alice/tiny", create_pr=True, revision="dev")
    with pytest.raises(TypeError, match="private must be a bool"):
        push_folder_to_hub(saved_dir, "alice/tiny", private="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="revision must be a branch name"):
        push_folder_to_hub(saved_dir, "alice/tiny", revision="")
    assert hub.requests == []


def test_offline_mode_uploads_nothing(hub, saved_dir, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        push_folder_to_hub(saved_dir, "alice/tiny")
    assert hub.requests == []


# ---------------------------------------------------------------- the mixin on other classes
class SavesWithSave(HubMixin):
    """Like the duplicate detector and intent classifier: `save(folder)`, an encoder inside."""

    def __init__(self) -> None:
        self.saved = 0

    def save(self, folder) -> None:
        self.saved += 1
        encoder = Path(folder) / "encoder"
        encoder.mkdir()
        _write_weights(encoder)
        (encoder / "config.json").write_text("{}")
        (Path(folder) / "detector.json").write_text(json.dumps({"threshold_": 0.8}))


def test_mixin_works_with_save_and_checks_before_saving(hub):
    obj = SavesWithSave()
    with pytest.raises(ValueError, match="repo_id"):
        obj.push_to_hub("a/b/c")
    assert obj.saved == 0  # checked before the (possibly slow) save
    url = obj.push_to_hub("alice/detector")
    assert obj.saved == 1 and url.endswith(f"/alice/detector/commit/{1:040x}")
    assert set(hub.files()) == {"encoder/model.safetensors", "encoder/config.json",
                                "detector.json"}


def test_mixin_needs_a_save_method(hub):
    with pytest.raises(TypeError, match="has no save_pretrained"):
        HubMixin().push_to_hub("alice/x")
    assert hub.requests == []


def test_card_data_survives_save_and_load(hub_model, saved_dir):
    loaded = read_card_data(saved_dir)
    assert loaded == ModelCardData.load(saved_dir)
    assert loaded.training["loss"] == "ContrastiveLoss"
    assert loaded.base_model == hub_model.card_data.base_model


# ---------------------------------------------------------------- CLI
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    from siamtext import cli as cli_module

    monkeypatch.setitem(cli_module.SUBCOMMANDS, "push", "push")  # registered in cli/__init__
    return cli_module.main


def test_cli_push_prints_the_commit_url(hub, cli, saved_dir, capsys):
    status = cli(["push", str(saved_dir), "alice/cli", "--private", "--token", "hf_cli",
                  "--commit-message", "from the CLI", "--revision", "dev"])
    assert status == 0
    assert capsys.readouterr().out.strip() == f"{hub.url}/alice/cli/commit/{1:040x}"
    assert json.loads(hub.requests[0]["body"])["visibility"] == "private"
    assert "POST /api/models/alice/cli/branch/dev" in hub.paths()
    assert hub.commits[0]["message"] == "from the CLI" and hub.commits[0]["revision"] == "dev"
    assert hub.requests[0]["headers"]["authorization"] == "Bearer hf_cli"


def test_cli_push_create_pr(hub, cli, saved_dir, capsys):
    assert cli(["push", str(saved_dir), "alice/cli", "--create-pr"]) == 0
    assert capsys.readouterr().out.strip() == f"{hub.url}/alice/cli/discussions/1"


@pytest.mark.parametrize("args, match", [
    (["alice/x/y"], "repo_id 'alice/x/y' is not a valid Hub repo id"),
    (["alice/x", "--revision", "dev", "--create-pr"], "do not pass revision"),
])
def test_cli_push_bad_input(hub, cli, saved_dir, capsys, args, match):
    assert cli(["push", str(saved_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("siamtext push: error:") and match in err
    assert hub.requests == []


def test_cli_push_not_a_model_folder(hub, cli, tmp_path, capsys):
    assert cli(["push", str(tmp_path), "alice/x"]) == 2
    assert "is not a saved model" in capsys.readouterr().err
    assert hub.requests == []


# ---------------------------------------------------------------- classifiers
def test_intent_classifier_push_uploads_encoder_state_and_card(hub, hub_model):
    from siamtext.classify import IntentClassifier

    clf = IntentClassifier(hub_model).fit(
        ["my card is lost", "I lost my card", "will it rain", "weather tomorrow"],
        ["card_lost", "card_lost", "weather", "weather"])
    url = clf.push_to_hub("alice/tiny-intents")
    assert url == f"{hub.url}/alice/tiny-intents/commit/{1:040x}"
    files = set(hub.commits[0]["files"])
    assert {"intent_classifier.json", "intent_classifier.safetensors", "README.md",
            "encoder/model.safetensors", "encoder/config.json"} <= files, files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
    readme = hub.commits[0]["files"]["README.md"].decode()
    assert "library_name: siamtext" in readme and "pipeline_tag: text-classification" in readme
    assert 'snapshot_download("alice/tiny-intents")' in readme
    assert MODEL_ID_PLACEHOLDER not in readme


def test_duplicate_detector_push_checks_before_saving(hub, hub_model, no_token):
    from siamtext.classify import DuplicateDetector

    with pytest.raises(ValueError, match="no Hugging Face token found"):
        DuplicateDetector(hub_model, threshold=0.8).push_to_hub("alice/dedup")
    assert hub.requests == []


def test_duplicate_detector_push(hub, hub_model):
    from siamtext.classify import DuplicateDetector

    DuplicateDetector(hub_model, threshold=0.8).push_to_hub("alice/dedup", private=True)
    assert json.loads(hub.requests[0]["body"])["visibility"] == "private"
    files = set(hub.commits[0]["files"])
    assert {"duplicate_detector.json", "encoder/model.safetensors", "README.md"} <= files
