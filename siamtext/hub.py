"""Publish saved models on the Hugging Face Hub.

``push_folder_to_hub`` uploads a folder written by ``save_pretrained`` (or ``save``) with
``HfApi.create_repo`` and ``HfApi.upload_folder``; ``HubMixin`` gives any such object a
``push_to_hub`` method. Everything that can be checked locally is checked before the first
request: the repo id, the token, offline mode, and that the folder is a saved model in
safetensors and JSON with no pickled file in it.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
from pathlib import Path

from siamtext.model_card import MODEL_ID_PLACEHOLDER, README_NAME
from siamtext.resolve import UNSAFE_WEIGHTS, has_weights

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload siamtext model"
_CONFIG_NAMES = ("config.json", "siamtext_config.json")


def check_repo_id(repo_id: object) -> str:
    """Return ``repo_id`` if it is a valid Hub model id (``"name"`` or ``"owner/name"``).

    Raises:
        ValueError: Naming the id and what is wrong with it (huggingface_hub's own rules).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a non-empty string like 'owner/name', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub repo id "
                         f"(expected 'name' or 'owner/name'): {err}") from None
    return repo_id


def resolve_token(token: str | bool | None) -> str:
    """The token to push with: ``token`` itself, else the one ``huggingface_hub`` finds.

    Raises:
        ValueError: If no token is available (pushing always needs one).
    """
    from huggingface_hub import get_token

    if isinstance(token, str) and token.strip():
        return token.strip()
    if token is False:
        raise ValueError("token=False disables authentication, but pushing to the Hub needs a "
                         "token with write access")
    if token not in (None, True):
        raise ValueError(f"token must be a string, True or None, got {token!r}")
    found = get_token()
    if not found:
        raise ValueError("no Hugging Face token found: pass token='hf_...', set the HF_TOKEN "
                         "environment variable, or run `hf auth login`")
    return found


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise OSError("HF_HUB_OFFLINE is set: pushing to the Hub needs the network; unset "
                      "HF_HUB_OFFLINE (and restart Python) to push")


def _is_openvino_weights(folder: Path, relative: Path) -> bool:
    """An OpenVINO IR's raw weights (``openvino/NAME.bin`` beside ``openvino/NAME.xml``), not a
    pickle."""
    return (relative.parts[0] == "openvino" and relative.suffix == ".bin"
            and (folder / relative.with_suffix(".xml")).is_file())


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def model_files(folder: str | Path) -> list[Path]:
    """The files of a saved model folder that would be uploaded, relative to the folder.

    Hidden files and folders (``.git``, ``.cache``...) are left out.

    Raises:
        ValueError: If ``folder`` is not a directory, is not a saved model (no safetensors
            weights, no ``config.json``), or holds pickled files, naming them.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"folder must be a saved model directory, got {str(folder)!r}, "
                         f"which {'is a file' if folder.exists() else 'does not exist'}")
    files = sorted(p.relative_to(folder) for p in folder.rglob("*")
                   if p.is_file() and not _is_hidden(p.relative_to(folder)))
    pickled = [str(f) for f in files if any(fnmatch.fnmatch(f.name, pat) for pat in UNSAFE_WEIGHTS)
               and not _is_openvino_weights(folder, f)]
    if pickled:
        raise ValueError(f"folder {str(folder)!r} holds pickled files ({', '.join(pickled)}); "
                         "siamtext uploads safetensors and JSON only. Remove them and push again.")
    has_config = any(f.name in _CONFIG_NAMES and len(f.parts) <= 2 for f in files)
    if not has_weights(folder) or not has_config:
        missing = [what for what, ok in (("model.safetensors weights", has_weights(folder)),
                                         ("config.json", has_config)) if not ok]
        raise ValueError(f"folder {str(folder)!r} is not a saved model: no "
                         f"{' and no '.join(missing)} (write one with save_pretrained(folder))")
    return files


def _stage(folder: Path, files: list[Path], repo_id: str, stage: Path) -> None:
    """Mirror ``files`` into ``stage`` (links, not copies), with the README's placeholder
    model id replaced by ``repo_id``."""
    for rel in files:
        src, dst = folder / rel, stage / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel == Path(README_NAME):
            text = src.read_text(encoding="utf-8")
            dst.write_text(text.replace(MODEL_ID_PLACEHOLDER, repo_id), encoding="utf-8")
            continue
        try:
            os.symlink(src.resolve(), dst)
        except OSError:  # no symlinks (some Windows set-ups): copy instead
            shutil.copy2(src, dst)


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    exist_ok: bool = True,
) -> str:
    """Upload a saved model folder to a Hub model repo, creating the repo if needed.

    Args:
        folder: A folder written by ``save_pretrained`` (safetensors weights and JSON
            configs, optionally a ``README.md`` model card).
        repo_id: ``"owner/name"``, or ``"name"`` for the token owner's namespace.
        private: Create the repo private (ignored if it exists).
        token: A token with write access; default: ``HF_TOKEN`` or the saved login.
        commit_message: Default: ``"Upload siamtext model"``.
        revision: Branch to commit to, created from the default branch if missing.
        create_pr: Open a pull request against the default branch instead of committing
            to it.
        exist_ok: Push to an existing repo; ``False`` raises if it exists.

    Returns:
        The URL of the commit (of the pull request when ``create_pr``).

    Raises:
        ValueError: For an invalid ``repo_id``, no token, ``create_pr`` with ``revision``,
            or a folder that is not a saved model or holds pickled files; all before any
            request is made.
        OSError: If ``HF_HUB_OFFLINE`` is set.
        huggingface_hub.errors.HfHubHTTPError: If the Hub refuses (auth, existing repo...).
    """
    check_repo_id(repo_id)
    for name, value in (("private", private), ("create_pr", create_pr), ("exist_ok", exist_ok)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise ValueError(f"revision must be a branch name or None, got {revision!r}")
    if create_pr and revision not in (None, "main"):
        raise ValueError(f"create_pr=True opens a pull request against the default branch; "
                         f"do not pass revision (got {revision!r})")
    folder = Path(folder).expanduser()
    files = model_files(folder)
    _check_online()
    token = resolve_token(token)

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=exist_ok, repo_type="model")
    full_id = getattr(repo_url, "repo_id", None) or repo_id
    if revision is not None and revision != "main" and not create_pr:
        api.create_branch(full_id, branch=revision, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="siamtext-push-") as tmp:
        _stage(folder, files, full_id, Path(tmp))
        info = api.upload_folder(
            repo_id=full_id, folder_path=tmp, repo_type="model",
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
            revision=revision, create_pr=create_pr,
        )
    url = info.pr_url if create_pr and info.pr_url else info.commit_url
    logger.info("Pushed %s to %s: %s", folder, full_id, url)
    return str(url)


class HubMixin:
    """Adds ``push_to_hub`` to a class that saves itself with ``save_pretrained(folder)``
    (or ``save(folder)``) into safetensors and JSON.

    Examples:
        >>> model = SiamText("sentence-transformers/all-MiniLM-L6-v2")
        >>> model.push_to_hub("my-user/my-model")  # doctest: +SKIP
        'https://huggingface.co/my-user/my-model/commit/...'
    """

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | bool | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        exist_ok: bool = True,
    ) -> str:
        """Save to a temporary folder and upload it to a Hub model repo.

        The upload holds what ``save_pretrained`` writes: safetensors weights, JSON configs
        and the ``README.md`` model card, whose usage snippets name ``repo_id``.

        Args:
            repo_id: ``"owner/name"``, or ``"name"`` for the token owner's namespace.
            private: Create the repo private (ignored if it exists).
            token: A token with write access; default: ``HF_TOKEN`` or the saved login.
            commit_message: Default: ``"Upload siamtext model"``.
            revision: Branch to commit to, created if missing.
            create_pr: Open a pull request instead of committing to the default branch.
            exist_ok: Push to an existing repo; ``False`` raises if it exists.

        Returns:
            The URL of the commit (of the pull request when ``create_pr``).

        Raises:
            ValueError: For an invalid ``repo_id`` or no token, before anything is saved or
                uploaded; see :func:`push_folder_to_hub` for the rest.
        """
        check_repo_id(repo_id)  # cheap checks first: saving a large model takes a while
        _check_online()
        token = resolve_token(token)
        save = getattr(self, "save_pretrained", None) or getattr(self, "save", None)
        if not callable(save):
            raise TypeError(f"{type(self).__name__} has no save_pretrained(folder) or "
                            "save(folder) method to push")
        with tempfile.TemporaryDirectory(prefix="siamtext-save-") as tmp:
            save(tmp)
            return push_folder_to_hub(
                tmp, repo_id, private=private, token=token, commit_message=commit_message,
                revision=revision, create_pr=create_pr, exist_ok=exist_ok,
            )
