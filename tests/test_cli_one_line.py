"""One line, never a traceback: a read-only store, workdir or demo folder (a real read-only bind
mount in a user namespace, `unshare -rm`), `extract --device cuda` without a GPU, a closed pipe
(`cinefuse store info | head`), empty, header-only and non-UTF-8 manifests."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_movielens  # noqa: E402

from cinefuse.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TAIL = "is on a read-only file system: run with a store, workdir or output folder you can write to (or fix its permissions)"


def can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -o bind,ro / / 2>/dev/null || true; true"],
                           capture_output=True)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not can_mount_read_only(), reason="needs `unshare -rm` (user namespaces)")


def read_only_run(folder: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``cinefuse ARGV`` with ``folder`` bind-mounted read-only (EROFS on every write under it)."""
    quoted = shlex.join([str(folder), str(folder)])
    command = (f"mount -o bind,ro {quoted} && mount -o remount,bind,ro {quoted} && exec "
               + shlex.join([sys.executable, "-m", "cinefuse", *argv]))
    return subprocess.run(["unshare", "-rm", "sh", "-c", command], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=600)


def write_films(path: Path, n: int) -> Path:
    words = ["space rocket", "love heart", "crime police", "war army"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "title", "plot", "year"])
        for i in range(1, n + 1):
            w.writerow([i, "", f"Film {i}", f"{words[i % 4]} story {i % 5}", 1950 + i % 60])
    return path


TEXT_ONLY = ["--visual", "", "--audio", "", "--text", "tfidf", "--meta", "year", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneline")
    write_movielens(root / "ml", 80, np.arange(80) % 4, 60, seed=0)
    write_films(root / "films.csv", 80)
    assert main(["extract", "--manifest", str(root / "films.csv"), "--store", str(root / "store"), *TEXT_ONLY]) == 0
    assert main(["fuse", "--store", str(root / "store"), "--ratings", str(root / "ml" / "ratings.csv"), "--movies",
                 str(root / "ml" / "movies.csv"), "--workdir", str(root / "wd"), "--steps", "50",
                 "--no-progress"]) == 0
    return root


@needs_unshare
def test_extract_into_a_read_only_store(trained, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(trained / "store", store)
    done = read_only_run(store, "extract", "--manifest", str(trained / "films.csv"), "--store", str(store),
                         *TEXT_ONLY, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"cinefuse extract: error: {store} {TAIL}\n")
    fresh = tmp_path / "ro"
    fresh.mkdir()
    done = read_only_run(fresh, "extract", "--manifest", str(trained / "films.csv"), "--store", str(fresh / "new"),
                         *TEXT_ONLY, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"cinefuse extract: error: {fresh} {TAIL}\n")


@needs_unshare
@pytest.mark.parametrize("argv", [["evaluate", "--no-progress"], ["index", "build"]])
def test_evaluate_and_index_build_in_a_read_only_workdir(trained, tmp_path, argv):
    workdir = tmp_path / "wd"
    shutil.copytree(trained / "wd", workdir)
    done = read_only_run(workdir, *argv, "--workdir", str(workdir), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-3000:]
    assert done.stderr.startswith(f"cinefuse {argv[0]}: error: {workdir}") and done.stderr.endswith(f"{TAIL}\n")


@needs_unshare
def test_demo_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "demo"
    folder.mkdir()
    done = read_only_run(folder, "demo", "--workdir", str(folder / "run"), "--items", "40", "--users", "40",
                         "--steps", "50", "--no-progress", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"cinefuse demo: error: {folder} {TAIL}\n")


def test_device_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    films = write_films(tmp_path / "films.csv", 4)
    assert main(["extract", "--manifest", str(films), "--store", str(tmp_path / "s"), "--device", "cuda",
                 *TEXT_ONLY]) == 2
    assert capsys.readouterr().err == (
        f"cinefuse extract: error: --device cuda: torch sees no GPU here (torch {torch.__version__}, CUDA build "
        f"{torch.version.cuda or 'none'}): run with --device cpu, or leave --device at auto\n")
    assert not (tmp_path / "s").exists()  # stopped before the store was made
    # the default, auto, runs on the CPU here and says so
    assert main(["extract", "--manifest", str(films), "--store", str(tmp_path / "s"), "--json", *TEXT_ONLY]) == 0
    assert '"device": "cpu"' in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly(trained):
    """`cinefuse store info STORE | head`: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "cinefuse", "store", "info", str(trained / "store")],
                              stdout=write, stderr=subprocess.PIPE, env=ENV, timeout=300)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


@pytest.mark.parametrize("content, message", [
    (b"", "manifest {path} is empty: write a header (id,video,title,plot,...) and one row per item"),
    (b"id,video,title\n", "manifest {path} has no rows (a header only?): add one row per item (id, video, title, "
                          "plot, ...)"),
    (b"id,title\n1,Am\xe9lie\n", "manifest {path} is not UTF-8 text (byte 0xe9 at offset 13): save it as UTF-8 "
                                 "(e.g. `iconv -f latin1 -t utf-8`)"),
])
def test_bad_manifests_are_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "items.csv"
    path.write_bytes(content)
    assert main(["extract", "--manifest", str(path), "--store", str(tmp_path / "s"), *TEXT_ONLY]) == 2
    assert capsys.readouterr().err == f"cinefuse extract: error: {message.format(path=path)}\n"
    assert not (tmp_path / "s").exists()
