"""A task killed while it writes a model folder to S3 (a real server over HTTP, a real process, SIGKILL)
leaves nothing a reader can take for the new folder: the next reader finds the folder uncommitted,
the object being uploaded keeps its old complete bytes, and the next attempt's push is read whole."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etl.artifacts import COMMIT_FILE, ArtifactMissingError, ArtifactStore

pytestmark = pytest.mark.integration

REPO_DIR = Path(__file__).resolve().parents[2]
WEIGHTS_BYTES = 200 << 20  # over twice s3fs's 50 MiB part size: sent as a multipart upload of 4 parts


def write_model(folder: Path, seed: bytes) -> dict[str, str]:
    """A model folder (weights, config, metrics) whose bytes depend on ``seed``; name -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(seed).digest() * (1 << 15)  # 1 MiB
    (folder / "model.pt").write_bytes(block * (WEIGHTS_BYTES // len(block)))
    (folder / "config.json").write_text(f'{{"seed": "{seed.decode()}"}}\n')
    (folder / "metrics.json").write_text(f'{{"auc": 0.5, "seed": "{seed.decode()}"}}\n')
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def multipart_uploads(store: ArtifactStore) -> int:
    bucket = store.key(store.home).split("/", 1)[0]
    return len(store.fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []))


def test_a_push_killed_mid_write_is_never_read_and_the_next_attempt_is(tmp_path, s3_artifacts, monkeypatch):
    home = (tmp_path / "worker_a").resolve()
    monkeypatch.setenv("SHOPMTL_HOME", str(home))
    writer = ArtifactStore(home, s3_artifacts)
    folder = home / "runs/2026-01-22/models/multitask-20260122-abc"
    first_attempt = write_model(folder, b"first")
    writer.push_folder(folder)

    # The next attempt writes other bytes and is killed while its weights are on their way.
    second_attempt = write_model(folder, b"second")
    push = subprocess.Popen([sys.executable, "-m", "etl.artifacts", "push-folder", str(folder)], cwd=REPO_DIR,
                            env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while multipart_uploads(writer) == 0:
        assert push.poll() is None, "the push ended before it could be killed: " + push.stdout.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no multipart upload started within 2 minutes"
        time.sleep(0.02)
    push.send_signal(signal.SIGKILL)
    push.wait(timeout=30)

    # Another worker: the folder reads as absent, never as the first attempt's files mixed with the second's.
    reader = ArtifactStore((tmp_path / "worker_b").resolve(), s3_artifacts)
    target = reader.home / folder.relative_to(home)
    with pytest.raises(ArtifactMissingError, match=COMMIT_FILE):
        reader.pull_folder(target)
    assert not target.exists()
    # The weights being uploaded were never half there: the store still has the first attempt's, whole.
    stored = hashlib.sha256(writer.fs.cat_file(f"{writer.key(folder)}/model.pt")).hexdigest()
    assert stored == first_attempt["model.pt"] != second_attempt["model.pt"]

    # The retry pushes again, and a reader then gets exactly the second attempt.
    retry = subprocess.run([sys.executable, "-m", "etl.artifacts", "push-folder", str(folder)], cwd=REPO_DIR,
                           env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stdout[-2000:] + retry.stderr[-2000:]
    assert reader.pull_folder(target)
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in target.iterdir()} == second_attempt
