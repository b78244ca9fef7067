"""Run artifacts on shared storage: each worker's ``SHOPMTL_HOME`` is a working copy of ``SHOPMTL_ARTIFACTS_URL``.

Without ``SHOPMTL_ARTIFACTS_URL`` the files under ``SHOPMTL_HOME`` are the artifacts and every method
here does nothing. With it (any fsspec URL: ``s3://bucket/shopmtl``, ``gs://...``, ``file:///mnt/shared``)
a task, on whichever worker it lands:

1. pulls what it reads from the store into the worker's ``SHOPMTL_HOME``;
2. runs its stage on local files, unchanged (Great Expectations' data docs, torch, LightGBM and Polars
   all write local files, and every stage reads its inputs whole);
3. pushes what it wrote, and only once the stage has succeeded: a failed task leaves nothing in the store.

This is how Metaflow's and Kubeflow's S3 datastores move task artifacts; staging through local disk
(instead of reading ``s3://`` paths in every stage) keeps one code path for every filesystem and lets a
worker reuse what it pulled before. Keys mirror paths relative to ``SHOPMTL_HOME``, so every worker must
use the same ``SHOPMTL_HOME`` path (docker-compose.yml's workers do); a path outside it is an error.

Atomic writes, as on one disk:
- a file is one object. An object store's PUT is atomic (S3, GCS and Azure show the old object or the
  new one, never part of one; a killed multipart upload is never completed); on a filesystem store
  (``file://``, a mount) the file is written under a temporary name and renamed.
- a folder (the features, a model version, the data docs) is committed by ``_COMMIT.json``, written
  last, listing every file's size and sha256. A push deletes the record first, so a folder being
  replaced, or left half-written by a killed task, reads as absent, never as a mix of two attempts;
  a pull downloads exactly the listed files, checks their size and sha256, and removes local files
  the record does not list.

A local copy whose size and modification time match the object's is not downloaded again (rsync's
quick check: a download and a push set the local file's time to the object's).

Credentials: the Airflow connection ``shopmtl_artifacts`` when it is defined (type aws: login and
password are the access key and secret; extra ``endpoint_url``, ``region_name``, or ``storage_options``
for any filesystem), else the filesystem's own chain (for S3: ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, profiles, instance roles). They go to the filesystem
only: the store's repr and its messages show the URL, never them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from etl.contract import ARTIFACTS_CONN_ID

log = logging.getLogger(__name__)

COMMIT_FILE = "_COMMIT.json"
# Files moved at once: object stores answer each request in tens of milliseconds, so a folder of many
# small files (data docs, day partitions) goes as fast as its requests overlap.
TRANSFER_THREADS = 8
HASH_CHUNK = 1 << 20

Stat = tuple[int, int]  # (size, mtime in whole seconds) of a local file


class ArtifactsError(RuntimeError):
    """The artifact store cannot give or take a file as it should."""


class ArtifactMissingError(ArtifactsError, FileNotFoundError):
    """A folder a task needs has no commit record: its writer has not succeeded (or was killed mid-write)."""


@dataclass(frozen=True)
class ArtifactStore:
    """``home``: this worker's local copy; ``url``: the shared store (None: ``home`` is the store)."""

    home: Path
    url: str | None = None
    # Credentials and endpoint for the filesystem: kept out of repr, equality and logs.
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def shared(self) -> bool:
        return self.url is not None

    @cached_property
    def _filesystem(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs  # fsspec (and s3fs) only where a store is configured

        fs, root = url_to_fs(self.url, **dict(self.storage_options))
        return fs, root.rstrip("/")

    @property
    def fs(self) -> Any:
        return self._filesystem[0]

    def key(self, path: Path | str) -> str:
        """The object key of a local path: its path under ``home``, below the store's root."""
        local = Path(os.path.abspath(path))  # not resolve(): a link's own name is its key
        try:
            relative = local.relative_to(self.home)
        except ValueError:
            raise ArtifactsError(
                f"{local} is not under SHOPMTL_HOME ({self.home}): with SHOPMTL_ARTIFACTS_URL every worker must "
                "use the same SHOPMTL_HOME path, where runs and partitions are laid out alike"
            ) from None
        return f"{self._filesystem[1]}/{relative.as_posix()}"

    def location(self, path: Path | str) -> str:
        """Where a local path lives for a reader: its store URL, or the path itself without a store."""
        return self.fs.unstrip_protocol(self.key(path)) if self.shared else str(path)

    def local_path(self, location: Path | str) -> Path:
        """The local path of a location ``location`` gave (a store URL or a local path)."""
        text = str(location)
        if self.shared and "://" in text:
            root = self.fs.unstrip_protocol(self._filesystem[1]).rstrip("/")
            if not text.startswith(root + "/"):
                raise ArtifactsError(f"{text} is not in this deployment's artifact store {self.url}")
            return self.home / text[len(root) + 1:]
        return Path(text)

    # --- pulling ---------------------------------------------------------------------------------

    def pull_files(self, paths: Iterable[Path]) -> dict[Path, Stat | None]:
        """Bring each file the store has to its local path, as the store has it. Returns the snapshot
        ``push_changed`` takes after the stage: each path's local state, None where the store has no
        copy, so that a local file the store lacks (left by a task that failed here) is pushed too.

        A local file the store lacks is kept, as it would be without a store: removing it could pull
        the floor from under a task of another night on this worker that has just written it."""
        paths = [Path(path) for path in paths]
        if not self.shared:
            return {path: local_stat(path) for path in paths}
        by_parent: dict[Path, list[Path]] = {}
        for path in paths:
            by_parent.setdefault(path.parent, []).append(path)
        wanted: list[tuple[str, Path, int, float, str | None]] = []
        stored: set[Path] = set()
        for parent, children in by_parent.items():
            listing = self._list(self.key(parent))
            for path in children:
                info = listing.get(path.name)
                if info is None:
                    continue
                stored.add(path)
                if not matches(path, info):
                    wanted.append((info["name"], path, info["size"], modified(self.fs, info), None))
        self._download(wanted)
        return {path: local_stat(path) if path in stored else None for path in paths}

    def pull_folder(self, path: Path, required: bool = True, keep: Iterable[str] = ()) -> bool:
        """Bring a committed folder here whole: its listed files, checked, and nothing else (local
        files it does not list are removed, except under the top-level names in ``keep``, which are
        this worker's caches). A folder without a commit record raises ArtifactMissingError when
        ``required``, else returns False."""
        path = Path(path)
        if not self.shared:
            if required and not path.is_dir():
                raise ArtifactMissingError(f"{path} does not exist")
            return path.is_dir()
        record = self.read_commit(path)
        if record is None:
            if required:
                raise ArtifactMissingError(
                    f"{self.location(path)} has no {COMMIT_FILE}: the task that writes it has not succeeded "
                    "(or was stopped mid-write), so none of it is read"
                )
            return False
        listing = self._find(self.key(path))
        wanted = []
        for relative, entry in record["files"].items():
            source = entry.get("same_as") or f"{self.key(path)}/{relative}"
            info = listing.get(source) or self._info(source)
            if info is None or info["size"] != entry["size"]:
                raise ArtifactsError(
                    f"{self.fs.unstrip_protocol(source)} does not match the commit record of {self.location(path)} "
                    "(changed or removed after it was committed): push the folder again"
                )
            local = path / relative
            if not matches(local, info):
                wanted.append((source, local, entry["size"], modified(self.fs, info), entry["sha256"]))
        self._download(wanted)
        keep = set(keep)
        for local in local_files(path):
            relative = local.relative_to(path).as_posix()
            if relative not in record["files"] and relative.split("/", 1)[0] not in keep:
                local.unlink()
        log.info("Pulled %s (%d files, %d downloaded)", self.location(path), len(record["files"]), len(wanted))
        return True

    def read_commit(self, path: Path) -> dict[str, Any] | None:
        """The commit record of a folder in the store, or None."""
        try:
            return json.loads(self.fs.cat_file(f"{self.key(path)}/{COMMIT_FILE}"))
        except FileNotFoundError:
            return None

    def fetch_folder(self, location: Path | str) -> Path:
        """The local path of a folder recorded by its location (the model registry's ``artifact_path``),
        pulled here first when the store is shared. A folder the store lacks is left absent locally,
        for the caller to treat as gone."""
        path = self.local_path(location)
        self.pull_folder(path, required=False)
        return path

    # --- pushing ---------------------------------------------------------------------------------

    def push_files(self, paths: Iterable[Path]) -> None:
        """Put each local file in the store, each one atomically."""
        paths = [Path(path) for path in paths]
        if self.shared and paths:
            self._upload([(path, self.key(path)) for path in paths])

    def push_folder(self, path: Path, same_as_roots: Iterable[Path] = (), skip: Iterable[str] = ()) -> None:
        """Replace the folder in the store by the local one and commit it (record last).

        A file hard-linked to one under ``same_as_roots`` (already in the store: the kept impression
        days) is recorded by reference instead of uploaded twice. Top-level names in ``skip`` (local
        caches) are left out."""
        path = Path(path)
        if not self.shared:
            return
        folder_key = self.key(path)
        skip = set(skip)
        files = [file for file in local_files(path) if file.relative_to(path).parts[0] not in skip]
        same_as = linked_keys(self, same_as_roots)
        entries: dict[str, dict[str, Any]] = {}
        uploads = []
        for file in files:
            relative = file.relative_to(path).as_posix()
            status = file.stat()
            entries[relative] = {"size": status.st_size, "sha256": sha256_file(file)}
            original = same_as.get((status.st_dev, status.st_ino))
            if original is not None:
                entries[relative]["same_as"] = original
            else:
                uploads.append((file, f"{folder_key}/{relative}"))
        committed = self.read_commit(path)
        if committed is not None and committed["files"] == entries:
            # The same bytes (a re-run of a day trains the same model version): nothing to replace, and
            # no moment in which a reader (another night's gate loading this champion) finds it absent.
            log.info("%s is already in the store as it is here", self.location(path))
            return
        if committed is not None:  # uncommit first: from now until the new record a reader sees no folder
            self.fs.rm_file(f"{folder_key}/{COMMIT_FILE}")
        self._upload(uploads)
        stale = set(self._find(folder_key)) - {f"{folder_key}/{relative}" for relative in entries}
        for key in sorted(stale):
            self.fs.rm_file(key)
        record = {"files": entries, "pushed_at": datetime.now(UTC).isoformat(timespec="seconds"), "host": socket.gethostname()}
        record_bytes = json.dumps(record, indent=1, sort_keys=True).encode()
        self._write_object(f"{folder_key}/{COMMIT_FILE}", lambda target: self.fs.pipe_file(target, record_bytes))
        log.info("Pushed %s (%d files, %d uploaded)", self.location(path), len(entries), len(uploads))

    def push_changed(self, before: Mapping[Path, Stat | None]) -> list[Path]:
        """Push the files of a ``pull_files`` snapshot that the stage created or changed since, or that
        the store lacked; returns them."""
        changed = [path for path, stat in before.items() if path.is_file() and local_stat(path) != stat]
        self.push_files(changed)
        return changed

    # --- transfers -------------------------------------------------------------------------------

    def _download(self, wanted: list[tuple[str, Path, int, float, str | None]]) -> None:
        def fetch(item: tuple[str, Path, int, float, str | None]) -> None:
            key, local, size, mtime, sha256 = item
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{local.name}.{os.getpid()}.pull")
            try:
                self.fs.get_file(key, str(partial))
                if partial.stat().st_size != size or (sha256 and sha256_file(partial) != sha256):
                    raise ArtifactsError(f"{self.fs.unstrip_protocol(key)} changed while it was read: pull again")
                os.utime(partial, (mtime, mtime))
                os.replace(partial, local)
            finally:
                partial.unlink(missing_ok=True)

        run_all(fetch, wanted)

    def _upload(self, uploads: list[tuple[Path, str]]) -> None:
        def put(item: tuple[Path, str]) -> None:
            local, key = item
            self._write_object(key, lambda target: self.fs.put_file(str(local), target))
            info = self.fs.info(key)
            mtime = modified(self.fs, info)
            os.utime(local, (mtime, mtime))  # the next pull's quick check sees the object as this file

        run_all(put, uploads)

    def _write_object(self, key: str, write: Callable[[str], object]) -> None:
        """``write(target key)`` so that ``key`` appears whole: an object store's PUT is atomic; on a
        filesystem store the object is written under a temporary name and renamed."""
        if not is_filesystem(self.fs):
            write(key)
            return
        folder, name = key.rsplit("/", 1)
        partial = f"{folder}/.{name}.{os.getpid()}.push"
        self.fs.makedirs(folder, exist_ok=True)
        write(partial)
        self.fs.mv(partial, key)

    def _list(self, folder_key: str) -> dict[str, dict[str, Any]]:
        """The files directly in a folder of the store, by name."""
        self.fs.invalidate_cache(folder_key)  # s3fs caches listings; another worker may have written since
        try:
            entries = self.fs.ls(folder_key, detail=True)
        except FileNotFoundError:
            return {}
        return {entry["name"].rsplit("/", 1)[-1]: entry for entry in entries if entry.get("type") == "file"}

    def _find(self, folder_key: str) -> dict[str, dict[str, Any]]:
        """Every object under a folder of the store, by key, with its listing entry."""
        self.fs.invalidate_cache(folder_key)
        try:
            return self.fs.find(folder_key, detail=True)
        except FileNotFoundError:
            return {}

    def _info(self, key: str) -> dict[str, Any] | None:
        self.fs.invalidate_cache(key)
        try:
            return self.fs.info(key)
        except FileNotFoundError:
            return None


def load_artifact_store() -> ArtifactStore:
    """The deployment's store, from the settings (``SHOPMTL_HOME``, ``SHOPMTL_ARTIFACTS_URL``) and,
    inside Airflow, the ``shopmtl_artifacts`` connection."""
    from etl.config import load_settings

    settings = load_settings()
    return cached_store(settings.home, settings.artifacts_url)


@lru_cache(maxsize=4)
def cached_store(home: Path, url: str | None) -> ArtifactStore:
    # One store (and one filesystem client and connection lookup) per worker process and setting.
    return ArtifactStore(home, url, storage_options=connection_storage_options() if url else {})


def connection_storage_options(conn_id: str = ARTIFACTS_CONN_ID) -> dict[str, Any]:
    """Filesystem options from the Airflow connection ``conn_id``; empty outside Airflow or without it
    (the filesystem then reads its own environment: AWS_* for S3)."""
    try:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return {}
    try:
        connection = Connection.get(conn_id)
    except AirflowNotFoundException:
        return {}
    except Exception as error:  # not inside a task (a CLI or a test): no connection API to ask
        log.debug("No Airflow connection %s: %s", conn_id, type(error).__name__)
        return {}
    return storage_options_of(connection.login, connection.password, connection.extra_dejson)


def storage_options_of(login: str | None, password: str | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """s3fs options from an aws connection's fields; ``extra["storage_options"]`` passes any others."""
    options: dict[str, Any] = {}
    if login:
        options["key"] = login
    if password:
        options["secret"] = password
    if extra.get("endpoint_url"):
        options["endpoint_url"] = extra["endpoint_url"]
    if extra.get("region_name"):
        options["client_kwargs"] = {"region_name": extra["region_name"]}
    options.update(extra.get("storage_options") or {})
    return options


def linked_keys(store: ArtifactStore, roots: Iterable[Path]) -> dict[tuple[int, int], str]:
    """(device, inode) -> store key of every hard-linked file under ``roots``."""
    keys: dict[tuple[int, int], str] = {}
    for root in map(Path, roots):
        for file in local_files(root):
            status = file.stat()
            if status.st_nlink > 1:
                keys[(status.st_dev, status.st_ino)] = store.key(file)
    return keys


def local_files(path: Path) -> list[Path]:
    """The files under a folder (links to files followed, links to folders not), sorted; none when absent."""
    if not path.is_dir():
        return []
    found = []
    for folder, _, names in os.walk(path):
        found.extend(Path(folder) / name for name in names if (Path(folder) / name).is_file())
    return sorted(found)


def local_stat(path: Path) -> Stat | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_size, int(status.st_mtime)


def matches(local: Path, info: Mapping[str, Any]) -> bool:
    """Whether a local file is the object ``info`` describes: same size and modification second."""
    stat = local_stat(local)
    return stat is not None and stat == (info["size"], int(modified_of(info) or -1))


def modified_of(info: Mapping[str, Any]) -> float | None:
    """An object's modification time (epoch seconds) from a listing entry, when it carries one."""
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if value is not None else None


def modified(fs: Any, info: Mapping[str, Any]) -> float:
    value = modified_of(info)
    return value if value is not None else fs.modified(info["name"]).timestamp()


def is_filesystem(fs: Any) -> bool:
    """A filesystem store (renames are atomic) rather than an object store (PUTs are)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"file", "local"} & set(protocols))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_all(work: Any, items: list[Any]) -> None:
    """``work(item)`` for every item, TRANSFER_THREADS at a time; the first error is raised."""
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        for _ in pool.map(work, items):
            pass


def main(argv: list[str] | None = None) -> None:
    """CLI: ``init`` creates the store's bucket or folder if missing (docker-compose's airflow-init);
    the others move paths between this machine's SHOPMTL_HOME and the store by hand, e.g. to put an
    existing deployment's champion model folders in a new store before its first shared night."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m etl.artifacts", description=main.__doc__)
    parser.add_argument("action", choices=["init", "push-folder", "pull-folder", "push-files", "pull-files"])
    parser.add_argument("paths", nargs="*", type=Path, help="paths under SHOPMTL_HOME")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = load_artifact_store()
    if not store.shared:
        print(f"SHOPMTL_ARTIFACTS_URL is not set: the artifacts stay in SHOPMTL_HOME ({store.home})")
        return
    paths = [path.absolute() for path in args.paths]
    if args.action == "init":
        store.fs.makedirs(store.key(store.home), exist_ok=True)
        print(f"Run artifacts in {store.location(store.home)}")
    elif args.action == "push-files":
        store.push_files(paths)
    elif args.action == "pull-files":
        store.pull_files(paths)
    for path in paths if args.action.endswith("-folder") else []:
        if args.action == "push-folder":
            store.push_folder(path)
        else:
            store.pull_folder(path)


if __name__ == "__main__":
    main()
