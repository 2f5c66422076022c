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


# -- ratings: recognised by content, columns, separator, validation (issues 22 and 24) -------------
BAD = ("userId,movieId,rating,timestamp\n"
       "1,1,4.0,10\n"       # line 2: fine
       "1,3,nan,11\n"       # line 3: not a number
       "2,1,-1,12\n"        # line 4: negative
       "2,5,inf,13\n"       # line 5: infinite
       "3,1,1e308,14\n"     # line 6: above 5 (and beyond float32)
       "3,2,4,16\n"         # line 7: (3, 2) rated 4 ...
       "3,2,2,15\n"         # line 8: ... and 2, earlier by its timestamp
       "4,4,3,1\n"          # line 9: (4, 4) rated 3 ...
       "4,4,3,2\n"          # line 10: ... and 3 again: a repeat, kept once
       "5,,3,2\n")          # line 11: no item id


def test_bad_ratings_stop_the_run_with_counts_and_examples(tmp_path):
    path = write(tmp_path / "ratings.csv", BAD)
    with pytest.raises(CinefuseError) as err:
        load_ratings(path)
    assert str(err.value) == (
        f"ratings file {path}: 5 bad row(s) (1 without a user or item id, 1 rating not a number, "
        "1 rating infinite, 1 rating negative, 1 rating above 5) and 1 (user, item) pair(s) rated differently on 2 rows; e.g. line 3: user 1, item 3, "
        "rating nan; line 4: user 2, item 1, rating -1; line 5: user 2, item 5, rating inf; line 6: user 3, item 1, "
        "rating 1e+308; line 11: user 5, item nan, rating 3; user 3, item 2 rated 4 (line 7), 2 (line 8). Fix the "
        "file, or choose --on-bad-ratings drop (drop those rows) or keep-last (drop the bad rows, keep the latest "
        "rating of each pair)")
    with pytest.raises(CinefuseError, match=r"on_bad_ratings 'skip': choose one of error, drop, keep-last"):
        load_ratings(path, on_bad_ratings="skip")


def test_bad_ratings_drop_and_keep_last_say_what_they_did(tmp_path):
    path = write(tmp_path / "ratings.csv", BAD)
    said = []
    r = load_ratings(path, on_bad_ratings="drop", log=said.append)
    assert list(zip(r.user.tolist(), r.item.tolist(), r.rating.tolist(), r.timestamp.tolist())) == [
        (1, "1", 4.0, 10), (4, "4", 3.0, 1)]
    assert said == r.notes == [
        f"ratings file {path}: dropped 5 bad row(s) (1 without a user or item id, 1 rating not a number, "
        "1 rating infinite, 1 rating negative, 1 rating above 5) (--on-bad-ratings drop)",
        f"ratings file {path}: dropped every row of 1 (user, item) pair(s) rated differently on 2 rows "
        "(--on-bad-ratings drop)",
        f"ratings file {path}: 1 row(s) repeating an earlier (user, item, rating) row kept once"]
    said.clear()
    r = load_ratings(path, on_bad_ratings="keep-last", log=said.append)
    # (3, 2): the row with the latest timestamp (line 7, t=16) wins, though line 8 comes later in the file
    assert list(zip(r.user.tolist(), r.item.tolist(), r.rating.tolist(), r.timestamp.tolist())) == [
        (1, "1", 4.0, 10), (3, "2", 4.0, 16), (4, "4", 3.0, 1)]
    assert said[1] == (f"ratings file {path}: kept the latest row of each of 1 (user, item) pair(s) rated differently "
                       "on 2 rows, dropped 1 (--on-bad-ratings keep-last)")
    # without timestamps "latest" is the last in the file
    plain = write(tmp_path / "plain.csv", "user,item,rating\n3,2,4\n3,2,2\n1,1,5\n")
    r = load_ratings(plain, on_bad_ratings="keep-last", log=said.append)
    assert r.timestamp is None and list(zip(r.user.tolist(), r.rating.tolist())) == [(3, 2.0), (1, 5.0)]


def test_repeated_identical_rows_are_kept_once_and_said(tmp_path, capsys):
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,10\n1,1,4.0,12\n2,1,3,5\n")
    r = load_ratings(path)
    assert list(zip(r.user.tolist(), r.timestamp.tolist())) == [(1, 10), (2, 5)]
    assert capsys.readouterr().err == f"ratings file {path}: 1 row(s) repeating an earlier (user, item, rating) row kept once\n"


def test_ratings_beyond_float32_are_out_of_range_in_any_file(tmp_path):
    path = write(tmp_path / "scores.txt", "user,item,score\n1,a,7.5\n2,b,1e308\n")
    with pytest.raises(CinefuseError) as err:
        load_ratings(path)
    assert str(err.value).startswith(f"ratings file {path}: 1 bad row(s) (1 rating above 3.40282e+38); "
                                     "e.g. line 3: user 2, item b, rating 1e+308. Fix the file")
    assert load_ratings(path, max_rating=10, on_bad_ratings="drop", log=lambda m: None).rating.tolist() == [7.5]
    with pytest.raises(CinefuseError, match=r"2 bad row\(s\) \(2 rating above 5\)"):
        load_ratings(path, max_rating=5)


@pytest.mark.parametrize("name, text", [
    ("ratings.csv", "userId\tmovieId\trating\ttimestamp\n196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n"),
    ("ratings.tsv", "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n"),
    ("data.txt", "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n"),
    ("ratings.csv", "196::242::3::881250949\n186::302::3.5::891717742\n"),
    ("export.csv", "user_id;movie_id;rating;timestamp\n196;242;3;881250949\n186;302;3.5;891717742\n"),
    ("ratings", "196 242  3 881250949\n186 302 3.5 891717742\n"),
])
def test_ratings_recognised_by_content_not_name(tmp_path, name, text):
    r = load_ratings(write(tmp_path / name, text))
    assert r.user.tolist() == [196, 186] and r.item.tolist() == ["242", "302"]
    assert r.rating.tolist() == [3.0, 3.5] and r.timestamp.tolist() == [881250949, 891717742]


def test_ratings_columns_mapping_and_separator(tmp_path):
    path = write(tmp_path / "ratings.csv", "when,stars,user,item\n5,4.5,u1,tt01\n6,2,u2,tt01\n7,3,u1,tt02\n")
    r = load_ratings(path, columns="user,item,stars,when")
    assert r.user.tolist() == [0, 1, 0]  # user ids that are not integers: numbered in order of appearance
    assert r.item.tolist() == ["tt01", "tt01", "tt02"] and r.rating.tolist() == [4.5, 2.0, 3.0]
    assert r.timestamp.tolist() == [5, 6, 7]
    assert load_ratings(path, columns=["user", "item", "Stars"]).timestamp is None  # names match case-insensitively
    with pytest.raises(CinefuseError) as err:
        load_ratings(path, columns="user,item,rating")
    assert str(err.value) == (f"ratings file {path} has no column 'rating' for the rating (its columns: when, stars, "
                              "user, item); --ratings-columns names the user,item,rating[,timestamp] columns of its header")
    with pytest.raises(CinefuseError) as err:
        load_ratings(path)
    assert str(err.value) == (f"ratings file {path} (','-separated) has no rating column (its header: when, stars, user, "
                              "item); name them with --ratings-columns user,item,rating[,timestamp] (header names), "
                              "or check the separator (--ratings-sep)")
    with pytest.raises(CinefuseError, match="give user,item,rating or user,item,rating,timestamp"):
        load_ratings(path, columns="user,item")
    # no header: 1-based column numbers
    bare = write(tmp_path / "bare.txt", "9|4.0|1|50\n9|3.0|2|60\n")
    r = load_ratings(bare, sep="|", columns="3,1,2")
    assert r.user.tolist() == [1, 2] and r.item.tolist() == ["9", "9"] and r.rating.tolist() == [4.0, 3.0]
    assert r.timestamp is None
    assert load_ratings(bare, columns="3,1,2,4").timestamp.tolist() == [50, 60]
    with pytest.raises(CinefuseError) as err:
        load_ratings(bare, columns="3,1,2,5")
    assert str(err.value) == f"ratings file {bare} has 4 columns ('|'-separated); --ratings-columns asks for column 5"
    tabbed = write(tmp_path / "t.csv", "1\t2\t3\n")
    assert load_ratings(tabbed, sep="tab").rating.tolist() == [3.0]
    assert load_ratings(tabbed, sep="\\t").rating.tolist() == [3.0]
    with pytest.raises(CinefuseError) as err:
        load_ratings(tabbed, sep=",")
    assert str(err.value) == (f"ratings file {tabbed}: separator ',' splits '1\\t2\\t3' into fewer than 3 fields; "
                              "check --ratings-sep")
    odd = write(tmp_path / "odd.csv", "1-2-3\n")
    with pytest.raises(CinefuseError) as err:
        load_ratings(odd)
    assert str(err.value) == (f"cannot tell how ratings file {odd} is separated: no separator among '::', tab, ',', "
                              "';', '|', spaces splits its first lines (e.g. '1-2-3') into the same 3 or more fields; "
                              "pass the separator (--ratings-sep)")


def test_timestamp_required_only_by_cold_item_time(tmp_path):
    path = write(tmp_path / "ratings.tsv", "1\t10\t4\n2\t10\t3\n2\t11\t5\n")
    r = load_ratings(path)
    assert r.timestamp is None and r.notes == []
    assert r.subset(r.rating > 3.5).item.tolist() == ["10", "11"] and r.subset(r.rating > 3.5).timestamp is None
    with pytest.raises(CinefuseError) as err:
        r.require_timestamp()
    assert str(err.value) == ("the cold-item-time protocol orders items by their first rating time, and these ratings "
                              "have no timestamp column; add one, name it with --ratings-columns "
                              "user,item,rating,timestamp, or use another protocol")
    with pytest.raises(CinefuseError) as err:
        load_ratings(path, require_timestamp=True)
    assert str(err.value) == (f"ratings file {path} has no timestamp column, which the cold-item-time protocol needs "
                              "(it orders items by their first rating time); name it with --ratings-columns "
                              "user,item,rating,timestamp, or use another protocol")
    dated = write(tmp_path / "dated.csv", "user,item,rating,time\n1,10,4,2020-01-01\n2,10,3,1577836800\n")
    said = []
    r = load_ratings(dated, log=said.append)
    assert r.timestamp is None and r.rating.tolist() == [4.0, 3.0]
    assert said == [f"ratings file {dated}: timestamp column ignored, 1 value(s) are not integer times "
                    "(e.g. line 2: '2020-01-01'); only cold-item-time uses it"]
    with pytest.raises(CinefuseError) as err:
        load_ratings(dated, require_timestamp=True)
    assert str(err.value) == (f"ratings file {dated}: 1 timestamp(s) are not integer times (e.g. line 2: '2020-01-01'); "
                              "the cold-item-time protocol needs them")
    stamped = load_ratings(write(tmp_path / "s.csv", "user,item,rating,time\n1,10,4,7\n"), require_timestamp=True)
    assert stamped.require_timestamp().tolist() == [7] and stamped.subset([0]).timestamp.tolist() == [7]


def test_unreadable_and_empty_ratings_files(tmp_path):
    empty = write(tmp_path / "ratings.csv", "\n\n")
    with pytest.raises(CinefuseError) as err:
        load_ratings(empty)
    assert str(err.value) == f"ratings file {empty} is empty"
    quoted = write(tmp_path / "quoted.csv", '1,2,3\n4,"5,6\n7,8,9\n')
    with pytest.raises(CinefuseError) as err:
        load_ratings(quoted, sep=",")
    assert str(err.value) == (f"cannot read ratings file {quoted} as ','-separated (Error tokenizing data. C error: EOF "
                              "inside string starting at row 1); check the separator (--ratings-sep)")
    short = write(tmp_path / "short.csv", "1,2,3\n4,5\n6,7,8\n")  # a row without its rating is a bad row
    with pytest.raises(CinefuseError, match=r"short.csv: 1 bad row\(s\) \(1 rating not a number\); e.g. "
                                            r"line 2: user 4, item 5, rating nan\. Fix the file"):
        load_ratings(short, sep=",")


def test_a_folder_with_another_ratings_file(tmp_path):
    root = tmp_path / "mine"
    write(root / "ratings.tsv", "196\t242\t3\t881250949\n")
    write(root / "movies.csv", "movieId,title,genres\n242,Kolya (1996),Comedy\n")
    assert load_ratings(root).item.tolist() == ["242"]
    write(root / "ratings.txt", "1,2,3\n")
    with pytest.raises(CinefuseError) as err:
        load_ratings(root)
    assert str(err.value) == f"{root} holds several ratings files (ratings.tsv, ratings.txt); pass one of them"
    write(root / "ratings.csv", "userId,movieId,rating\n7,242,5\n")  # the release's own name wins
    assert load_ratings(root).user.tolist() == [7]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CinefuseError) as err:
        load_ratings(tmp_path / "empty")
    assert str(err.value) == (f"{tmp_path / 'empty'} holds no ratings file (ratings.csv, u.data, ratings.dat or another "
                              "ratings.* file); pass the unpacked ml-* folder or the ratings file itself")
