"""Download MovieLens releases from GroupLens: checked, unpacked atomically, clear when offline.

Checks, in order: the byte count against the server's Content-Length (a cut connection), the
release's pinned size where known, the MD5 (pinned here for the frozen releases, as GroupLens
publishes them in ``<zip>.md5``; for ``ml-latest-small``, which GroupLens may regenerate, the
published ``.md5`` is fetched beside the zip), every member's CRC (``zipfile.testzip``), and the
member files each release must hold. Only then is the folder unpacked, under a temporary name
that is renamed into place, so ``DIR/<version>`` either holds a whole release or does not exist.

Pinned MD5s: GroupLens's published values for ml-100k, ml-1m and ml-20m (the same values every
major dataset library pins). They could not be re-checked against files.grouplens.org from the
machine this was written on (no network there); a mismatch says so and names the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cinefuse.errors import CinefuseError

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "CINEFUSE_MOVIELENS_URL"


@dataclass(frozen=True)
class Release:
    """One MovieLens zip: what it must hold and what it must hash to."""

    version: str
    md5: str | None                 # None: use the published <zip>.md5 beside it
    size: int | None                # exact bytes where known
    max_size: int                   # refuse anything larger (a wrong URL serving a huge file)
    members: tuple[str, ...]        # files that must be in the zip, under "<version>/"

    @property
    def zip_name(self) -> str:
        return f"{self.version}.zip"


RELEASES = {
    "ml-latest-small": Release(
        "ml-latest-small", md5=None, size=None, max_size=20 << 20,
        members=("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt")),
    "ml-100k": Release(
        "ml-100k", md5="0e33842e24a9c977be4e0107933c0723", size=None, max_size=20 << 20,
        members=("u.data", "u.item", "u.genre", "u.user", "README")),
    "ml-1m": Release(
        "ml-1m", md5="c4d9eecfca2ab87c1945afe126590906", size=None, max_size=30 << 20,
        members=("ratings.dat", "movies.dat", "users.dat", "README")),
    "ml-20m": Release(
        "ml-20m", md5="cd245b17a1ae2cc31bb14903e1204af3", size=198_702_078, max_size=400 << 20,
        members=("ratings.csv", "movies.csv", "tags.csv", "links.csv", "genome-scores.csv",
                 "genome-tags.csv", "README.txt")),
}


def release(version: str) -> Release:
    if version not in RELEASES:
        raise CinefuseError(f"unknown MovieLens version {version!r}; choose one of {', '.join(RELEASES)}")
    return RELEASES[version]


def base_url(explicit: str | None = None) -> str:
    url = explicit or os.environ.get(BASE_URL_ENV) or GROUPLENS_URL
    return url if url.endswith("/") else url + "/"


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)   # noqa: S310 (http/https only, checked)
    except urllib.error.HTTPError as exc:
        raise CinefuseError(f"{url}: the server answered HTTP {exc.code} {exc.reason}; "
                            f"check the version name or --base-url") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CinefuseError(
            f"cannot reach {url} ({reason}); this machine looks offline. Download the zip on a "
            f"machine with network and pass it with --zip PATH, or copy the unpacked folder") from None


def fetch_published_md5(url: str, timeout: float = 30.0) -> str:
    """The MD5 in GroupLens's ``<zip>.md5`` ("MD5 (name) = hex" or "hex  name")."""
    with _open(url + ".md5", timeout) as response:
        text = response.read(4096).decode("ascii", "replace")
    for token in text.replace("=", " ").split():
        if len(token) == 32 and all(c in "0123456789abcdefABCDEF" for c in token):
            return token.lower()
    raise CinefuseError(f"{url}.md5 holds no MD5 ({text.strip()[:80]!r})")


def download_zip(url: str, dest: Path, rel: Release, timeout: float = 60.0, progress: bool = True) -> str:
    """Stream ``url`` to ``dest`` (a temporary name), checking length and size; returns its MD5."""
    from tqdm import tqdm

    if not url.startswith(("http://", "https://")):
        raise CinefuseError(f"{url}: only http:// and https:// URLs are downloaded")
    digest = hashlib.md5()
    with _open(url, timeout) as response:
        declared = response.headers.get("Content-Length")
        declared = int(declared) if declared and declared.isdigit() else None
        if declared is not None and declared > rel.max_size:
            raise CinefuseError(f"{url} is {declared} bytes, more than {rel.version} can be "
                                f"({rel.max_size}); check --base-url")
        got = 0
        with open(dest, "wb") as fh, tqdm(total=declared, unit="B", unit_scale=True,
                                          desc=rel.zip_name, disable=not progress) as bar:
            while True:
                try:
                    block = response.read(1 << 20)
                except (OSError, urllib.error.URLError) as exc:
                    raise CinefuseError(f"{url}: the download broke off after {got} bytes ({exc}); "
                                        f"run the command again") from None
                if not block:
                    break
                got += len(block)
                if got > rel.max_size:
                    raise CinefuseError(f"{url} sent more than {rel.max_size} bytes; check --base-url")
                fh.write(block)
                digest.update(block)
                bar.update(len(block))
            fh.flush()
            os.fsync(fh.fileno())
    if declared is not None and got != declared:
        raise CinefuseError(f"{url}: got {got} of {declared} bytes (connection cut); run the command again")
    if rel.size is not None and got != rel.size:
        raise CinefuseError(f"{url}: {got} bytes, but {rel.zip_name} is {rel.size} bytes; "
                            f"the file on the server is not the published release")
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_zip(path: Path, rel: Release) -> list[str]:
    """CRC of every member, no path escaping the folder, and the release's files present."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise CinefuseError(f"{path}: not a zip file ({exc}); download it again") from None
    if bad is not None:
        raise CinefuseError(f"{path}: member {bad} fails its CRC check; download it again")
    for name in names:
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise CinefuseError(f"{path}: member {name!r} would unpack outside the folder; refusing it")
    missing = [m for m in rel.members if f"{rel.version}/{m}" not in names]
    if missing:
        raise CinefuseError(f"{path}: not a {rel.version} release, it lacks "
                            f"{', '.join(rel.version + '/' + m for m in missing)}")
    return names


def unpack_atomically(path: Path, out: Path, rel: Release) -> Path:
    """Unpack ``<version>/`` from the zip into ``out/<version>`` via a temporary folder and a rename."""
    target = out / rel.version
    staging = Path(tempfile.mkdtemp(prefix=f".{rel.version}.partial-", dir=out))
    try:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / rel.version, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def is_unpacked(out: Path, rel: Release) -> bool:
    return all((out / rel.version / m).is_file() for m in rel.members)


def download_movielens(version: str, out: str | os.PathLike, *, url: str | None = None,
                       zip_path: str | os.PathLike | None = None, force: bool = False,
                       keep_zip: bool = False, expected_md5: str | None = None,
                       timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch (or take ``zip_path``), verify and unpack one release; returns ``out/<version>``.

    ``url`` is the folder holding the zips (default GroupLens, or ``$CINEFUSE_MOVIELENS_URL``).
    ``expected_md5`` overrides the pinned or published MD5 (for a mirror of a re-cut release).
    An already unpacked release is left alone unless ``force``.
    """
    rel = release(version)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if is_unpacked(out, rel) and not force:
        return out / rel.version

    source = base_url(url) + rel.zip_name
    if zip_path is not None:
        local = Path(zip_path)
        if not local.is_file():
            raise CinefuseError(f"--zip {local}: no such file")
        got_md5 = file_md5(local)
        if rel.size is not None and local.stat().st_size != rel.size:
            raise CinefuseError(f"{local}: {local.stat().st_size} bytes, but {rel.zip_name} is {rel.size} bytes")
        want_md5 = expected_md5 or rel.md5
        check_zip(local, rel)
        if want_md5 is not None and got_md5 != want_md5:
            raise CinefuseError(f"{local}: MD5 {got_md5} is not the published {want_md5} of {rel.zip_name}")
        return unpack_atomically(local, out, rel)

    want_md5 = expected_md5 or rel.md5 or fetch_published_md5(source, timeout)
    partial = out / f".{rel.zip_name}.part"
    try:
        got_md5 = download_zip(source, partial, rel, timeout=timeout, progress=progress)
        if got_md5 != want_md5:
            raise CinefuseError(f"{source}: MD5 {got_md5} is not the published {want_md5}; the download "
                                f"is damaged or the release changed (pass --md5 to accept another)")
        check_zip(partial, rel)
        target = unpack_atomically(partial, out, rel)
        if keep_zip:
            os.replace(partial, out / rel.zip_name)
        return target
    finally:
        if partial.exists():
            partial.unlink()
