"""Hub I/O: push folders (models, datasets, the Space) and fetch model folders."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.utils import get_session

log = logging.getLogger(__name__)


def push_folder(folder: str | Path, repo_id: str, repo_type: str = "model", message: str = "Upload (fermm)",
                private: bool | None = None, space_sdk: str | None = None, replace: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the repo URL. With
    ``replace`` the commit also deletes the repo's files that ``folder`` does not have (a stale weights file
    from an earlier push would otherwise be downloaded with the new model).

    The token comes from ``HF_TOKEN`` or the saved login (huggingface_hub's own lookup); it is never logged.
    """
    api = HfApi()
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True,
                          space_sdk=space_sdk if repo_type == "space" else None)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=message,
                      delete_patterns="*" if replace else None)
    log.info("pushed %s to %s", folder, url)
    return str(url)


def push_model_folder(folder: str | Path, repo_id: str) -> str | None:
    """Push a saved model folder; on failure keep it and log how to retry (never raises)."""
    # the model, not run state (last/, logs/) nor a file an interrupted save left half-written (*.tmp)
    keep = [f for f in Path(folder).iterdir() if f.is_file() and f.suffix != ".tmp"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for f in keep:
                shutil.copy2(f, tmp)
            return push_folder(tmp, repo_id, message="Upload fermm model", replace=True)
    except Exception as e:  # network, auth, permissions: local output stays intact
        log.error("push to %s failed (%s: %s). The model in %s is intact; retry with: "
                  "hf upload %s %s . --exclude '*/*'", repo_id, type(e).__name__, e, folder, repo_id, folder)
        return None


def push_trained(folder: str | Path, repo_id: str) -> None:
    """A training script's push: on failure (logged with the retry command by :func:`push_model_folder`) the
    script ends with status 1, so automation sees it; the local output stays intact either way."""
    if push_model_folder(folder, repo_id) is None:
        raise SystemExit(1)


def split_revision(source: str) -> tuple[str, str | None]:
    """``"USER/REPO@REVISION"`` -> (``"USER/REPO"``, ``"REVISION"``); no ``@``: (source, None)."""
    repo, sep, revision = source.partition("@")
    return (repo, revision or None) if sep else (source, None)


def fetch_folder(path_or_repo: str) -> Path:
    """A local folder for a model: the path itself, or a Hub snapshot of ``USER/REPO[@REVISION]`` (cache first;
    works offline with ``HF_HUB_OFFLINE=1`` when it is cached). Weights come as safetensors (and int8 ONNX graphs),
    never as pickles."""
    path = Path(path_or_repo)
    if path.is_dir():
        return path
    repo, revision = split_revision(path_or_repo)
    if path.exists() or repo.startswith((".", "/")) or repo.count("/") != 1:
        raise FileNotFoundError(f"{path_or_repo}: no such model folder")
    try:
        return Path(snapshot_download(repo, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.md", "*.npz", "*.onnx"]))
    except Exception as e:
        if constants.is_offline_mode():
            why = "the Hub is offline (HF_HUB_OFFLINE=1) and no copy is cached"
        else:
            why = f"it could not be downloaded ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        raise FileNotFoundError(f"no local checkpoint, and Hub repo {path_or_repo}: {why}") from None


def offline_if_unreachable(timeout: float = 3.0) -> bool:
    """Switch huggingface_hub (and transformers) to offline mode when the Hub cannot be reached, so a
    machine without network starts in seconds instead of retrying every download. Returns True if offline."""
    if constants.is_offline_mode():
        return True
    try:  # huggingface_hub's own HTTP client honours HTTPS_PROXY as the downloads will; any answer will do
        get_session().head(constants.ENDPOINT, timeout=timeout)
        return False
    except Exception:  # connection refused, DNS failure, timeout, proxy error
        log.warning("the Hugging Face Hub (%s) is unreachable: working offline with local and cached models",
                    constants.ENDPOINT)
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True
        return True
