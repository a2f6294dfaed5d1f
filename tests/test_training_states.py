"""Training states kept in the git history: recorded, restored byte for byte, refused when they do not match."""

import json
import os
import subprocess

import pytest

from tools import training_states as ts


@pytest.fixture
def repo(tmp_path, monkeypatch):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    monkeypatch.setattr(os, "environ", {**os.environ, **env})

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    state = tmp_path / "checkpoints" / "teacher"
    (state / "dit").mkdir(parents=True)
    (state / "dit" / "weights.safetensors").write_bytes(os.urandom(4096))
    (state / "result.json").write_text('{"step": 7}')
    git("add", ".")
    git("commit", "-q", "-m", "a teacher")
    monkeypatch.setattr(ts, "REPO", tmp_path)
    monkeypatch.setattr(ts, "MANIFEST", tmp_path / "checkpoints" / "states.json")
    return tmp_path, git


def test_record_then_restore_gives_the_same_bytes(repo):
    root, git = repo
    weights = root / "checkpoints/teacher/dit/weights.safetensors"
    original = weights.read_bytes()
    assert ts.main(["record", "checkpoints/teacher"]) == 0
    manifest = json.loads((root / "checkpoints/states.json").read_text())
    assert set(manifest["states"]["checkpoints/teacher"]["files"]) == {"dit/weights.safetensors", "result.json"}
    git("rm", "-r", "-q", "checkpoints/teacher")  # out of the tree, still in the history
    git("commit", "-q", "-m", "teacher out of the tree")
    assert not weights.exists()
    assert ts.main(["restore"]) == 0
    assert weights.read_bytes() == original
    weights.write_bytes(b"damaged")  # a changed file counts as missing and is written again
    assert ts.missing_files("checkpoints/teacher", manifest["states"]["checkpoints/teacher"]) == [
        "dit/weights.safetensors"
    ]
    assert ts.main(["restore", "checkpoints/teacher"]) == 0 and weights.read_bytes() == original


def test_a_wrong_digest_or_an_absent_commit_is_refused_by_name(repo, capsys):
    root, _ = repo
    ts.main(["record", "checkpoints/teacher"])
    path = root / "checkpoints/states.json"
    manifest = json.loads(path.read_text())
    entry = manifest["states"]["checkpoints/teacher"]
    (root / "checkpoints/teacher/result.json").unlink()
    entry["files"]["result.json"] = "0" * 64
    path.write_text(json.dumps(manifest))
    assert ts.main(["restore"]) == 1
    assert "result.json" in capsys.readouterr().err and not (root / "checkpoints/teacher/result.json").exists()
    entry["commit"] = "1" * 40
    path.write_text(json.dumps(manifest))
    assert ts.main(["restore"]) == 1
    assert "not in this clone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ts.main(["restore", "checkpoints/nothing"])
