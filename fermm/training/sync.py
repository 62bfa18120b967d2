"""Runs that outlive their machine: ``--sync_to_hub USER/REPO`` mirrors a run's folder to a Hub repo after every
epoch, and a run whose folder is behind the repo (a new machine, a session whose disk was not kept) restores it from
there first, so the same command resumes from the last epoch pushed.

Mirrored: each stage's resume state (``last/``), best weights (``best/``), ``history.json`` and
``training_args.json``; nothing else in the folder. Each push is one commit of a copy taken between epochs, so the
repo always holds one consistent epoch; it uploads in the background while training goes on, a failed push is
logged and never raised, and the end of each stage (or Ctrl-C) waits for the newest state to be pushed. Progress is
compared stage by stage (the epoch in each ``last/trainer.json``) before anything is restored or pushed: a folder
behind the repo is brought up to date, one ahead of it goes on, and two runs that have diverged stop with an error
rather than overwrite each other. One machine (or a shared disk) per run: only the main process restores and pushes.
"""
from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError

log = logging.getLogger(__name__)

STATE = "last/trainer.json"  # one per stage: the last epoch that stage finished
MIRRORED = ("last", "best")  # folders mirrored whole; plus these files of each stage:
MIRRORED_FILES = ("history.json", "training_args.json")


def progress(folder: Path) -> dict[str, int]:
    """{stage folder (relative, "." for a one-stage run): last finished epoch} of the run in ``folder``."""
    out = {}
    for state in folder.rglob(STATE):
        stage = state.parent.parent.relative_to(folder)
        if not any(part.endswith((".tmp", ".old")) for part in stage.parts):
            out[str(stage)] = json.loads(state.read_text())["epoch"]
    return out


def ahead(a: dict[str, int], b: dict[str, int]) -> bool:
    """Whether progress ``a`` is at least ``b`` in every stage (a missing stage counts as not started)."""
    return all(a.get(s, -1) >= e for s, e in b.items())


def state_files(root: Path) -> list[Path]:
    """The paths (relative to ``root``) of the run state that is mirrored: files under a ``last/`` or ``best/`` and
    each stage's history and arguments; never a half-written save (``*.tmp``, ``*.old``, where the copies for a push
    or a restore are staged too) nor huggingface_hub's download cache."""
    rels = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(r for r in rels if not any(part.endswith((".tmp", ".old")) or part == ".cache" for part in r.parts)
                  and (any(part in MIRRORED for part in r.parts[:-1]) or r.name in MIRRORED_FILES))


def copy_state(src: Path, dest: Path) -> None:
    """Copy the mirrored files of the run in ``src`` to ``dest``, keeping their paths."""
    for rel in state_files(src):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)


class RunDiverged(FileExistsError):
    """The run folder and the repo each went further than the other in some stage (an OSError, so the scripts
    report it in one line)."""


def first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}".rstrip(": ")


class RunSync:
    """One run folder mirrored to one Hub repo (:func:`for_run` gives the process's instance)."""

    def __init__(self, repo_id: str, folder: str | Path):
        self.repo_id, self.folder = repo_id, Path(folder)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fermm-sync")
        self._pending: Future | None = None
        self._unpushed: str | None = None  # the message of the newest state not pushed yet

    # ----------------------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Bring the folder up to the repo's state when the repo is ahead of it; True when something was restored.
        A repo that cannot be read is an error (starting afresh would push over it), and so are a folder and a
        repo that have each gone further than the other in some stage."""
        staging = self.folder / "restore.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            remote = self._download(staging, allow_patterns=[STATE, f"*/{STATE}"])
            if remote is None:
                return False  # nothing pushed yet: a new run
            here = progress(self.folder)
            if ahead(here, remote):
                return False  # this folder is the newest copy (or the same)
            if not ahead(remote, here):
                raise RunDiverged(f"--sync_to_hub {self.repo_id}: the run in {self.folder} and the one on the Hub "
                                 f"have diverged (last epochs here {here}, on the Hub {remote}); move one aside or "
                                 "sync to another repo")
            self._download(staging, allow_patterns=None)
            self._swap_in(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("restored %s from %s (last epochs %s)", self.folder, self.repo_id, remote)
        return True

    def _download(self, staging: Path, allow_patterns: list[str] | None) -> dict[str, int] | None:
        """The repo's files into ``staging`` and its progress, or None when nothing was pushed yet."""
        try:
            snapshot_download(self.repo_id, local_dir=staging, allow_patterns=allow_patterns)
        except RepositoryNotFoundError:
            try:  # a new run, or a token that cannot see the repo: only creating it tells them apart
                HfApi().create_repo(self.repo_id, private=True, exist_ok=True)
            except Exception as e:
                raise ConnectionError(f"--sync_to_hub {self.repo_id}: the repo can be neither read nor created "
                                      f"({first_line(e)}); log in (hf auth login or HF_TOKEN) as its owner") from None
            return None
        except Exception as e:
            raise ConnectionError(f"--sync_to_hub {self.repo_id}: the run state could not be read ({first_line(e)}); "
                                  "run again when the Hub can be reached, or without --sync_to_hub to train here "
                                  "alone") from None
        return progress(staging) or None

    def _swap_in(self, staging: Path) -> None:
        """Move the downloaded stages into place, each ``last/`` last: an interruption leaves a folder whose
        progress is still behind the repo, so the next run restores again."""
        for rel in sorted(state_files(staging), key=lambda r: "last" in r.parts):
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).replace(self.folder / rel)

    # ----------------------------------------------------------------------------- push

    def push(self, message: str) -> None:
        """Copy the run state as it is now and upload the copy in the background. While a push still runs, the
        newest state waits for :meth:`flush` or the next epoch's push."""
        if self._pending is not None and not self._pending.done():
            self._unpushed = message
            return
        self._report()
        snapshot = self.folder / "sync.tmp"
        shutil.rmtree(snapshot, ignore_errors=True)
        try:
            copy_state(self.folder, snapshot)
        except OSError as e:  # a full disk, say: the run goes on, its local state intact
            shutil.rmtree(snapshot, ignore_errors=True)
            log.warning("sync to %s: the run state could not be copied (%s); the next epoch tries again",
                        self.repo_id, first_line(e))
            self._unpushed = message
            return
        self._unpushed = None
        self._pending = self._pool.submit(self._upload, snapshot, message)

    @property
    def busy(self) -> bool:
        """Whether a push is running or the newest state still waits for one."""
        return self._unpushed is not None or (self._pending is not None and not self._pending.done())

    def flush(self) -> bool:
        """Wait for the push in flight, then push and wait for the newest state if it was not pushed yet; returns
        whether the repo now holds the folder's newest state."""
        ok = self._report()
        if self._unpushed is not None:
            self.push(self._unpushed)
            ok = self._report()
        return ok and self._unpushed is None

    def _upload(self, snapshot: Path, message: str) -> None:
        try:
            api = HfApi()
            api.create_repo(self.repo_id, private=True, exist_ok=True)
            # the repo becomes this copy: a file the run no longer has (an earlier --ema's) does not come back
            api.upload_folder(folder_path=str(snapshot), repo_id=self.repo_id, commit_message=message,
                              delete_patterns="*")
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    def _report(self) -> bool:
        """Wait for the push in flight (if any) and log how it went; True unless it failed."""
        done, self._pending = self._pending, None
        if done is None:
            return True
        try:
            done.result()
        except Exception as e:  # network, auth, quota: the run goes on and keeps its local state
            log.warning("sync to %s failed (%s); training goes on, the local run in %s is intact and the next push "
                        "tries again", self.repo_id, first_line(e), self.folder)
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
    key = (repo, str(Path(folder).resolve()))
    if key not in _runs:
        _runs[key] = RunSync(repo, folder)
    return _runs[key]
