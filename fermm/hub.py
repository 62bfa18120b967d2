"""Hub I/O: push folders (models, datasets, the Space) and resolve where a model comes from."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def push_folder(folder: str | Path, repo_id: str, repo_type: str = "model", message: str = "Upload (fermm)",
                private: bool | None = None) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the repo URL.

    The token comes from ``HF_TOKEN`` or the saved login (huggingface_hub's own lookup); it is never logged.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=message)
    log.info("pushed %s to %s", folder, url)
    return str(url)


def push_model_folder(folder: str | Path, repo_id: str) -> str | None:
    """Push a saved model folder; on failure keep it and log how to retry (never raises)."""
    keep = [f for f in Path(folder).iterdir() if f.is_file()]  # the model, not run state (last/, logs/)
    try:
        import tempfile, shutil

        with tempfile.TemporaryDirectory() as tmp:
            for f in keep:
                shutil.copy2(f, tmp)
            return push_folder(tmp, repo_id, message="Upload fermm model")
    except Exception as e:  # network, auth, permissions: local output stays intact
        log.error("push to %s failed (%s: %s). The model in %s is intact; retry with: "
                  "huggingface-cli upload %s %s .", repo_id, type(e).__name__, e, folder, repo_id, folder)
        return None
