"""The artifact store (etl.artifacts) on a filesystem store and on a real S3 server (moto, over HTTP):
what one worker pushes another pulls whole, an uncommitted folder is never read, the store is the record."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from etl.artifacts import COMMIT_FILE, ArtifactMissingError, ArtifactsError, ArtifactStore, load_artifact_store, storage_options_of


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store another worker would share: a folder (an NFS mount) or an S3 bucket."""
    if request.param == "file":
        return f"file://{tmp_path / 'shared'}"
    return request.getfixturevalue("s3_artifacts")


def worker(tmp_path: Path, url: str, name: str) -> ArtifactStore:
    """One worker's view: its own SHOPMTL_HOME, the shared store. Different folders stand for different
    hosts; keys are relative to each home."""
    home = (tmp_path / name).resolve()
    home.mkdir(exist_ok=True)
    return ArtifactStore(home, url)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_folder_pushed_by_one_worker_is_pulled_whole_by_another(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    features = first.home / "runs/2026-01-22/features"
    write(features / "orders.parquet", b"o" * 5000)
    write(features / "impressions.parquet/2026-01-21.parquet", b"i" * 300)
    write(features / "item_tables/cache.pt", b"local cache")
    first.push_folder(features, skip=["item_tables"])

    here = second.home / "runs/2026-01-22/features"
    write(here / "impressions.parquet/2025-12-01.parquet", b"a stale day of an older attempt")
    write(here / "item_tables/other.pt", b"this worker's cache")
    assert second.pull_folder(here, keep=["item_tables"])
    assert tree(here) == {
        "impressions.parquet/2026-01-21.parquet": b"i" * 300,
        "item_tables/other.pt": b"this worker's cache",  # kept: a cache, not part of the folder
        "orders.parquet": b"o" * 5000,
    }
    record = json.loads(first.fs.cat_file(f"{first.key(features)}/{COMMIT_FILE}"))
    assert sorted(record["files"]) == ["impressions.parquet/2026-01-21.parquet", "orders.parquet"]


def test_a_replaced_folder_loses_its_old_files_and_a_second_pull_downloads_nothing(tmp_path, store_url, caplog):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    model = first.home / "runs/d/models/v1"
    write(model / "model.pt", b"weights 1")
    write(model / "old.json", b"{}")
    first.push_folder(model)
    (model / "old.json").unlink()
    write(model / "model.pt", b"weights 2, longer")
    first.push_folder(model)
    assert sorted(first.fs.find(first.key(model))) == sorted([f"{first.key(model)}/{COMMIT_FILE}", f"{first.key(model)}/model.pt"])

    second.pull_folder(second.home / "runs/d/models/v1")
    assert tree(second.home / "runs/d/models/v1") == {"model.pt": b"weights 2, longer"}
    with caplog.at_level("INFO", logger="etl.artifacts"):
        second.pull_folder(second.home / "runs/d/models/v1")
    assert "(1 files, 0 downloaded)" in caplog.text  # the quick check: same size and time, not fetched again


def test_a_folder_without_its_commit_record_is_never_read(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    features = first.home / "runs/d/features"
    write(features / "orders.parquet", b"complete")
    first.push_folder(features)
    first.fs.rm_file(f"{first.key(features)}/{COMMIT_FILE}")  # as a push does first when it starts again

    with pytest.raises(ArtifactMissingError, match=r"has no _COMMIT\.json: the task that writes it has not succeeded"):
        second.pull_folder(second.home / "runs/d/features")
    assert not second.pull_folder(second.home / "runs/d/features", required=False)
    assert not (second.home / "runs/d/features").exists()


def test_an_object_changed_after_its_commit_is_an_error_not_a_silent_mix(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    features = first.home / "runs/d/features"
    write(features / "orders.parquet", b"committed bytes")
    first.push_folder(features)
    first.fs.pipe_file(f"{first.key(features)}/orders.parquet", b"other bytes, other size")
    with pytest.raises(ArtifactsError, match="does not match the commit record"):
        second.pull_folder(second.home / "runs/d/features")


def test_files_come_as_the_store_has_them_and_what_it_lacks_goes_back(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    partitions = [first.home / f"partitions/w/clicks/2026-01-0{day}.parquet" for day in (1, 2, 3)]
    before = first.pull_files(partitions)
    assert before == dict.fromkeys(partitions)  # the store has none yet
    write(partitions[0], b"day 1")
    write(partitions[1], b"day 2")
    assert first.push_changed(before) == partitions[:2]
    assert first.push_changed(first.pull_files(partitions)) == []  # nothing changed: nothing pushed

    mine = [second.home / path.relative_to(first.home) for path in partitions]
    write(mine[0], b"an older day 1")
    write(mine[2], b"day 3, written here by a task that then failed")
    before = second.pull_files(mine)
    assert [path.read_bytes() for path in mine] == [b"day 1", b"day 2", b"day 3, written here by a task that then failed"]
    assert second.push_changed(before) == [mine[2]]  # the store lacked it: it goes back with this task's work
    assert first.pull_files(partitions)[partitions[2]] is not None


def test_the_features_refer_to_kept_days_instead_of_a_second_copy(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    kept = write(first.home / "partitions/w/features/impressions/v1/2026-01-20.parquet", b"k" * 1000)
    features = first.home / "runs/d/features"
    (features / "impressions.parquet").mkdir(parents=True)
    os.link(kept, features / "impressions.parquet/2026-01-20.parquet")
    first.push_files([kept])
    first.push_folder(features, same_as_roots=[kept.parent])
    assert not first.fs.exists(f"{first.key(features)}/impressions.parquet/2026-01-20.parquet")

    second.pull_folder(second.home / "runs/d/features")
    assert (second.home / "runs/d/features/impressions.parquet/2026-01-20.parquet").read_bytes() == b"k" * 1000


def test_locations_name_the_store_and_map_back_to_this_worker(tmp_path, store_url):
    first, second = worker(tmp_path, store_url, "a"), worker(tmp_path, store_url, "b")
    model = write(first.home / "runs/d/models/v1/model.pt", b"w").parent
    first.push_folder(model)
    location = first.location(model)
    assert "://" in location and location.endswith("/runs/d/models/v1")
    assert second.fetch_folder(location) == second.home / "runs/d/models/v1"
    assert (second.home / "runs/d/models/v1/model.pt").read_bytes() == b"w"
    assert not second.fetch_folder(location.replace("/v1", "/gone")).exists()  # gone: absent, for the caller to judge
    with pytest.raises(ArtifactsError, match="not under SHOPMTL_HOME"):
        first.key(tmp_path / "elsewhere/file")


def test_without_a_store_home_is_the_store_and_nothing_moves(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPMTL_HOME", str(tmp_path))
    store = load_artifact_store()
    assert not store.shared and store.home == tmp_path.resolve()
    model = write(tmp_path / "runs/d/models/v1/model.pt", b"w").parent
    store.push_folder(model)
    assert store.pull_folder(model) and store.location(model) == str(model)
    assert store.push_changed(store.pull_files([model / "model.pt", model / "absent"])) == []
    with pytest.raises(ArtifactMissingError):
        store.pull_folder(tmp_path / "runs/d/features")


def test_credentials_come_from_the_connection_and_never_show():
    options = storage_options_of("AKIAEXAMPLE", "s3cr3t", {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"})
    assert options == {"key": "AKIAEXAMPLE", "secret": "s3cr3t", "endpoint_url": "http://minio:9000",
                       "client_kwargs": {"region_name": "eu-west-1"}}
    store = ArtifactStore(Path("/srv/shopmtl"), "s3://bucket/shopmtl", options)
    assert "s3cr3t" not in repr(store) and "AKIAEXAMPLE" not in repr(store)


def test_pushing_the_same_bytes_again_leaves_the_committed_folder_in_place(tmp_path, store_url, caplog):
    first = worker(tmp_path, store_url, "a")
    model = write(first.home / "runs/d/models/v1/model.pt", b"deterministic weights").parent
    first.push_folder(model)
    caplog.clear()
    with caplog.at_level("INFO", logger="etl.artifacts"):
        first.push_folder(model)  # a re-run of the day trains the same version, byte for byte
    assert "already in the store as it is here" in caplog.text and "Pushed" not in caplog.text
    assert first.read_commit(model) is not None


def test_an_airflow_connection_gives_the_endpoint_and_credentials(tmp_path, s3_endpoint, monkeypatch):
    import s3fs

    from etl.artifacts import cached_store

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="conn-key", secret="conn-secret", skip_instance_cache=True)
    client.mkdir("shopmtl-conn-test")
    connection = {"conn_type": "aws", "login": "conn-key", "password": "conn-secret", "extra": {"endpoint_url": s3_endpoint}}
    monkeypatch.setenv("AIRFLOW_CONN_SHOPMTL_ARTIFACTS", json.dumps(connection))
    monkeypatch.setenv("SHOPMTL_HOME", str(tmp_path))
    monkeypatch.setenv("SHOPMTL_ARTIFACTS_URL", "s3://shopmtl-conn-test/artifacts")
    cached_store.cache_clear()
    store = load_artifact_store()
    model = write(tmp_path / "runs/d/models/v1/model.pt", b"w").parent
    store.push_folder(model)
    assert client.exists("shopmtl-conn-test/artifacts/runs/d/models/v1/model.pt")
    assert "conn-secret" not in repr(store)
    cached_store.cache_clear()
