"""MovieLens loaders: every release's format on small hand-written files, and the real ml-latest-small."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cinefuse.datasets.movielens import detect_version, load_movies, load_ratings, load_tags
from cinefuse.errors import CinefuseError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture()
def ml_csv(tmp_path):
    root = tmp_path / "ml-latest-small"
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,2.5,964981247\n7,1,0.5,1\n")
    write(root / "movies.csv",
          'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,"Heat, The (1995) ",Crime\n'
          "5,Untitled,(no genres listed)\n6,Cosmos (1980–1983),Documentary\n")
    write(root / "tags.csv", "userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,pixar,2\n3,1,funny,3\n4,3,heist,4\n")
    return root


def test_csv_release(ml_csv):
    assert detect_version(ml_csv) == "csv"
    r = load_ratings(ml_csv)
    assert r.user.dtype == np.int64 and r.rating.dtype == np.float32 and r.timestamp.dtype == np.int64
    assert r.user.tolist() == [1, 1, 7]
    assert r.item.tolist() == ["1", "3", "1"]
    assert r.rating.tolist() == [4.0, 2.5, 0.5]
    assert r.timestamp.tolist() == [964982703, 964981247, 1]
    m = load_movies(ml_csv / "movies.csv")
    assert m.ids.tolist() == ["1", "3", "5", "6"]
    assert m.titles == ["Toy Story (1995)", "Heat, The (1995)", "Untitled", "Cosmos (1980–1983)"]
    assert m.genres == [["Adventure", "Animation"], ["Crime"], [], ["Documentary"]]
    assert m.years[:2].tolist() == [1995.0, 1995.0] and math.isnan(m.years[2]) and m.years[3] == 1980.0
    assert load_tags(ml_csv) == {"1": ["pixar", "funny"], "3": ["heist"]}


def test_ml100k_release(tmp_path):
    root = tmp_path / "ml-100k"
    write(root / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    flags_242 = ["0"] * 19
    flags_242[5] = "1"   # Comedy
    flags_302 = ["0"] * 19
    flags_302[6], flags_302[16] = "1", "1"  # Crime, Thriller
    flags_377 = ["1"] + ["0"] * 18  # unknown only
    lines = [
        "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join(flags_242),
        "302|L.A. Confidential (1997)|01-Jan-1997||http://x|" + "|".join(flags_302),
        "377|Señor Nobody|01-Jan-1994||http://x|" + "|".join(flags_377),
    ]
    write(root / "u.item", "\n".join(lines) + "\n", encoding="latin-1")
    assert detect_version(root) == "ml-100k"
    r = load_ratings(root)
    assert r.user.tolist() == [196, 186, 22] and r.item.tolist() == ["242", "302", "377"]
    assert r.rating.tolist() == [3.0, 3.0, 1.0] and r.timestamp.tolist() == [881250949, 891717742, 878887116]
    m = load_movies(root / "u.item")
    assert m.ids.tolist() == ["242", "302", "377"]
    assert m.titles == ["Kolya (1996)", "L.A. Confidential (1997)", "Señor Nobody"]
    assert m.genres == [["Comedy"], ["Crime", "Thriller"], []]
    assert m.years.tolist() == [1996.0, 1997.0, 1994.0]  # the last from the release date
    assert load_tags(root) == {}


def test_ml1m_release(tmp_path):
    root = tmp_path / "ml-1m"
    write(root / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(root / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
          "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n2::Café (2000)::Comedy\n",
          encoding="latin-1")
    assert detect_version(root) == "dat"
    r = load_ratings(root / "ratings.dat")
    assert r.user.tolist() == [1, 1] and r.item.tolist() == ["1193", "661"]
    assert r.rating.tolist() == [5.0, 3.0] and r.timestamp.tolist() == [978300760, 978302109]
    m = load_movies(root)
    assert m.ids.tolist() == ["1193", "661", "2"]
    assert m.titles[2] == "Café (2000)"
    assert m.genres == [["Drama"], ["Animation", "Children's", "Musical"], ["Comedy"]]
    assert m.years.tolist() == [1975.0, 1996.0, 2000.0]
    assert load_tags(root) == {}


def test_errors_name_the_path(tmp_path):
    with pytest.raises(CinefuseError, match="does not exist"):
        load_ratings(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CinefuseError, match="holds no MovieLens files"):
        load_movies(tmp_path / "empty")


def test_real_ml_latest_small(movielens_small):
    r = load_ratings(movielens_small)
    m = load_movies(movielens_small)
    tags = load_tags(movielens_small)
    assert len(r) == 100836 and len(np.unique(r.user)) == 610 and len(np.unique(r.item)) == 9724
    assert len(m) == 9742 and m.ids[0] == "1" and m.titles[0] == "Toy Story (1995)"
    assert m.genres[0] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert sum(1 for g in m.genres if not g) == 34
    assert set(r.item) <= set(m.ids)
    assert float(r.rating.min()) == 0.5 and float(r.rating.max()) == 5.0
    assert tags["60756"][:2] == ["funny", "Highly quotable"]
