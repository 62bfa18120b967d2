"""Runs that outlive their machine: ``--sync_to_hub USER/REPO`` mirrors a run's folder to a Hub repo after every
epoch, and a run started where its folder holds no run state restores it from there first, so the same command
resumes on another machine (or in another session of a machine whose disk is not kept) from the last epoch pushed.

What is mirrored is every stage's resume state (``last/``), best weights (``best/``) and history, never the
TensorBoard logs or a folder an interrupted save left behind (``*.tmp``, ``*.old``). Each push is one commit of a
copy taken between epochs, so the repo always holds one consistent epoch; it uploads in the background while
training goes on, and a failed push is logged, never raised (the next epoch's push carries the newer state).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError

log = logging.getLogger(__name__)

SKIPPED = ("logs", "*.tmp", "*.old")  # names never mirrored: TensorBoard logs, half-written saves


class RunSync:
    """One run folder mirrored to one Hub repo (:func:`for_run` gives the process's instance)."""

    def __init__(self, repo_id: str, folder: str | Path):
        self.repo_id, self.folder = repo_id, Path(folder)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fermm-sync")
        self._pending: Future | None = None
        self._created = False

    def holds_state(self) -> bool:
        """Whether the local folder already holds a run's resume state (then it is the newest copy)."""
        return any(self.folder.rglob("last/trainer.json"))

    def restore(self) -> bool:
        """Download the repo's run state into the folder when the folder holds none; False when there is nothing
        to restore (a new run, or the folder is already the newest copy). An unreachable Hub is an error: starting
        afresh would later push epoch 1 over the run it could not read."""
        if self.holds_state():
            return False
        with tempfile.TemporaryDirectory() as tmp:
            try:
                snapshot_download(self.repo_id, local_dir=tmp)
            except RepositoryNotFoundError:
                return False  # nothing pushed yet: a new run
            except Exception as e:
                raise ConnectionError(f"--sync_to_hub {self.repo_id}: the run state could not be read "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); run again when the Hub "
                                   "can be reached, or without --sync_to_hub to train here alone") from None
            found = sorted(p.parent.parent.relative_to(tmp) for p in Path(tmp).rglob("last/trainer.json"))
            if not found:
                return False
            shutil.copytree(tmp, self.folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".cache", *SKIPPED))
        log.info("restored %s from %s (stages %s)", self.folder, self.repo_id, ", ".join(map(str, found)))
        return True

    def push(self, message: str) -> bool:
        """Copy the folder as it is now and upload the copy in the background; returns whether a push started.
        While the previous push still runs this one is skipped (the next carries a newer state)."""
        if self._pending is not None and not self._pending.done():
            log.info("sync to %s: the previous push is still running; this epoch's state goes with the next",
                     self.repo_id)
            return False
        self._report()
        snapshot = Path(tempfile.mkdtemp(prefix="fermm-sync-"))
        shutil.copytree(self.folder, snapshot / "run", ignore=shutil.ignore_patterns(*SKIPPED))
        self._pending = self._pool.submit(self._upload, snapshot, message)
        return True

    def wait(self) -> bool:
        """Wait for the push in flight; returns whether the last push succeeded (True when none was made)."""
        return self._report()

    def _upload(self, snapshot: Path, message: str) -> None:
        try:
            api = HfApi()
            if not self._created:
                api.create_repo(self.repo_id, private=True, exist_ok=True)
                self._created = True
            api.upload_folder(folder_path=str(snapshot / "run"), repo_id=self.repo_id, commit_message=message)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    def _report(self) -> bool:
        done, self._pending = self._pending, None
        if done is None:
            return True
        try:
            done.result()
        except Exception as e:  # network, auth, quota: the run goes on and keeps its local state
            log.warning("sync to %s failed (%s: %s); training goes on, the local run in %s is intact and the next "
                        "epoch's push tries again", self.repo_id, type(e).__name__, str(e).splitlines()[0][:200],
                        self.folder)
            return False
        log.info("synced %s to %s", self.folder, self.repo_id)
        return True


_runs: dict[tuple[str, str], RunSync] = {}


def for_run(extra: dict) -> RunSync | None:
    """The process's :class:`RunSync` for a script's arguments (``extra``: its ``--sync_to_hub`` and
    ``--output_dir``), shared by every stage of the run; None without ``--sync_to_hub``."""
    repo, folder = extra.get("sync_to_hub"), extra.get("output_dir")
    if not repo or not folder:
        return None
    if repo == extra.get("push_to_hub"):
        raise ValueError(f"--sync_to_hub {repo}: give the run state a repo of its own; --push_to_hub replaces "
                         "every file of its repo with the final model")
    key = (repo, str(Path(folder).resolve()))
    if key not in _runs:
        _runs[key] = RunSync(repo, folder)
    return _runs[key]
