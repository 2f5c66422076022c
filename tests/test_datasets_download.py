"""``cinefuse data movielens`` against a real HTTP server on 127.0.0.1 serving generated zips."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from cinefuse.cli import main
from cinefuse.datasets.download import RELEASES, download_movielens
from cinefuse.errors import CinefuseError

from conftest import free_port

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,1,3.5,1445714835\n"
MOVIES = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,Grumpier Old Men (1995),Comedy|Romance\n"


def make_zip(version: str, drop: str | None = None, extra: dict | None = None) -> bytes:
    """A zip laid out like the GroupLens release (files under ``<version>/``)."""
    contents = {m: f"{version} {m}\n" for m in RELEASES[version].members}
    if version == "ml-latest-small":
        contents.update({"ratings.csv": RATINGS, "movies.csv": MOVIES, "tags.csv": "userId,movieId,tag,timestamp\n"})
    if version == "ml-100k":
        contents.update({"u.data": "1\t1\t4\t874965758\n2\t1\t3\t876893171\n",
                         "u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"})
    if drop:
        contents.pop(drop)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in contents.items():
            archive.writestr(f"{version}/{name}", text)
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return buf.getvalue()


class Files(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (name -> bytes); ``cut`` names send half their bytes and hang up."""

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.server.cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Files)
    httpd.files, httpd.cut = {}, set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/datasets/movielens/"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_latest_small_checked_against_the_published_md5_and_loadable(server, tmp_path):
    from cinefuse.datasets.movielens import load_movies, load_ratings

    body = make_zip("ml-latest-small")
    server.files["ml-latest-small.zip"] = body
    server.files["ml-latest-small.zip.md5"] = f"MD5 (ml-latest-small.zip) = {hashlib.md5(body).hexdigest()}\n".encode()
    code = main(["data", "movielens", "--version", "ml-latest-small", "--out", str(tmp_path), "--base-url", server.url])
    assert code == 0
    folder = tmp_path / "ml-latest-small"
    assert sorted(p.name for p in folder.iterdir()) == sorted(RELEASES["ml-latest-small"].members)
    assert [p.name for p in tmp_path.iterdir()] == ["ml-latest-small"]     # no zip, no partial left
    ratings = load_ratings(folder)
    assert ratings.item.tolist() == ["1", "3", "1"] and ratings.rating.tolist() == [4.0, 4.0, 3.5]
    assert load_movies(folder).genres == [["Adventure", "Animation"], ["Comedy", "Romance"]]
    # already there: nothing fetched (the server could be gone)
    server.files.clear()
    assert download_movielens("ml-latest-small", tmp_path, url=server.url, progress=False) == folder


def test_pinned_md5_refuses_a_zip_that_is_not_the_release(server, tmp_path):
    body = make_zip("ml-100k")
    server.files["ml-100k.zip"] = body
    with pytest.raises(CinefuseError) as err:
        download_movielens("ml-100k", tmp_path, url=server.url, progress=False)
    assert str(err.value) == (f"{server.url}ml-100k.zip: MD5 {hashlib.md5(body).hexdigest()} is not the published "
                              f"0e33842e24a9c977be4e0107933c0723; the download is damaged or the release "
                              f"changed (pass --md5 to accept another)")
    assert list(tmp_path.iterdir()) == []
    # the same file accepted with an explicit checksum, unpacked and readable in ml-100k format
    from cinefuse.datasets.movielens import load_ratings

    folder = download_movielens("ml-100k", tmp_path, url=server.url, expected_md5=hashlib.md5(body).hexdigest(),
                                keep_zip=True, progress=False)
    assert load_ratings(folder).user.tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k", "ml-100k.zip"]
    assert (tmp_path / "ml-100k.zip").read_bytes() == body


def test_cut_connection_missing_member_and_escaping_path(server, tmp_path):
    good = make_zip("ml-latest-small")
    server.files["ml-latest-small.zip"] = good
    server.files["ml-latest-small.zip.md5"] = hashlib.md5(good).hexdigest().encode()
    server.cut.add("ml-latest-small.zip")
    with pytest.raises(CinefuseError, match=r"(got \d+ of \d+ bytes \(connection cut\)|broke off after)"):
        download_movielens("ml-latest-small", tmp_path, url=server.url, progress=False)
    assert list(tmp_path.iterdir()) == []

    server.cut.clear()
    lacking = make_zip("ml-latest-small", drop="movies.csv")
    server.files["ml-latest-small.zip"] = lacking
    server.files["ml-latest-small.zip.md5"] = hashlib.md5(lacking).hexdigest().encode()
    with pytest.raises(CinefuseError, match=r"not a ml-latest-small release, it lacks ml-latest-small/movies.csv"):
        download_movielens("ml-latest-small", tmp_path, url=server.url, progress=False)

    evil = make_zip("ml-latest-small", extra={"../evil.txt": "x"})
    server.files["ml-latest-small.zip"] = evil
    server.files["ml-latest-small.zip.md5"] = hashlib.md5(evil).hexdigest().encode()
    with pytest.raises(CinefuseError, match=r"member '../evil.txt' would unpack outside the folder"):
        download_movielens("ml-latest-small", tmp_path, url=server.url, progress=False)
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "evil.txt").exists()


def test_http_error_names_the_url(server, tmp_path):
    with pytest.raises(CinefuseError) as err:
        download_movielens("ml-1m", tmp_path, url=server.url, progress=False)
    assert str(err.value) == (f"{server.url}ml-1m.zip: the server answered HTTP 404 Not Found; "
                              f"check the version name or --base-url")


def test_offline_is_a_clear_error_and_zip_is_the_way_round(tmp_path, capsys):
    dead = f"http://127.0.0.1:{free_port()}/movielens/"        # nothing listens there
    code = main(["data", "movielens", "--version", "ml-latest-small", "--out", str(tmp_path / "o"),
                 "--base-url", dead, "--timeout", "5"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cinefuse data: error: cannot reach {dead}ml-latest-small.zip.md5 (")
    assert "this machine looks offline. Download the zip on a machine with network and pass it with --zip PATH" in err
    local = tmp_path / "ml-latest-small.zip"
    local.write_bytes(make_zip("ml-latest-small"))
    code = main(["data", "movielens", "--version", "ml-latest-small", "--out", str(tmp_path / "o"),
                 "--zip", str(local), "--base-url", dead])
    assert code == 0
    assert (tmp_path / "o" / "ml-latest-small" / "ratings.csv").read_text() == RATINGS
