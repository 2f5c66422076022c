"""run_extract end to end: contract shapes, statuses of every bad-input kind, text-only items,
resume, shard slices, strict, exit codes, s3 inputs and stores, and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main
from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.runner import ExtractFailed
from cinefuse.extract.run import format_summary, run_extract
from cinefuse.store import open_store
from media_fixtures import (corrupt_audio_after, encode_video, truncate_audio_at, write_html, write_truncated,
                            write_zero_byte)

FIELDS = ["id", "video", "title", "plot", "year", "language"]
CHEAP = dict(visual=["lowlevel"], audio=["logmel"], text=[], meta=["year"])  # no neural network


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in FIELDS})
    return path


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Every kind of item: good clips, no audio, zero-byte, HTML, truncated, broken audio, missing
    file, text only."""
    d = tmp_path_factory.mktemp("collection")
    encode_video(d / "good1.mp4", seconds=2, tone_hz=440)
    encode_video(d / "good2.mp4", seconds=3, size=(80, 48), tone_hz=880)
    encode_video(d / "silent.mp4", seconds=2, audio=False)
    write_zero_byte(d / "zero.mp4")
    write_html(d / "page.mp4")
    write_truncated(encode_video(d / "long.mp4", seconds=5, faststart=True), d / "cut.mp4", 0.5)
    corrupt_audio_after(encode_video(d / "tone.mp4", seconds=5), d / "badaudio.mp4", 2.0)
    rows = [
        dict(id="1", video="good1.mp4", title="Good One", plot="A dog runs across a green park", year="1995", language="en"),
        dict(id="2", video="good2.mp4", title="Good Two", plot="Rockets fly to the moon at night", year="2004", language="fr"),
        dict(id="3", video="silent.mp4", title="Silent", plot="A quiet film without sound", year="1927", language="en"),
        dict(id="4", video="zero.mp4", title="Zero", plot="An empty download"),
        dict(id="5", video="page.mp4", title="Page", plot="An error page saved as video", year="2010"),
        dict(id="6", video="cut.mp4", title="Cut", plot="A download cut short", year="2012", language="de"),
        dict(id="7", video="badaudio.mp4", title="Bad Audio", plot="The sound breaks half way", year="1999"),
        dict(id="8", video="missing.mp4", title="Missing", plot="The file is not there"),
        dict(id="9", video="", title="Text Only (1984)", plot="Only words, no pictures at all", language="en"),
    ]
    return write_manifest(d / "items.csv", rows)


EXPECTED_STATUS = {  # id -> (visual status starts with, audio status starts with)
    "1": ("ok", "ok"), "2": ("ok", "ok"), "3": ("ok", "no audio track"),
    "4": ("empty file: 0 bytes", "empty file: 0 bytes"),
    "5": ("not a video: the file is text", "not a video: the file is text"),
    "6": ("partial: only ", "partial: "),
    "7": ("ok", "partial: 2.0 of 5.0 s (audio decode error at 2."),
    "8": ("missing file: ", "missing file: "),
    # item 9 is alone in its shard (shard_size 4) and has no video: a set with no valid row in a
    # shard is not written, and the store reads a set a shard lacks as "missing"
    "9": ("missing", "missing"),
}


@pytest.fixture(scope="module")
def full_run(collection, tmp_path_factory):
    store = tmp_path_factory.mktemp("stores") / "full"
    config = ExtractConfig(manifest=str(collection), store=str(store), frames=4, shard_size=4, batch_size=2,
                           workers=1, progress=False)
    return store, config, run_extract(config)


def test_contract_shapes_statuses_and_summary(full_run):
    store_path, config, summary = full_run
    store = open_store(store_path)
    sets = store.feature_sets()
    expected_shapes = {
        "visual/effnet_frames": (4, 1280), "visual/effnet": (1280,), "visual/lowlevel_frames": (4, 5),
        "visual/lowlevel": (10,), "audio/logmel_stats": (256,), "audio/logmel_seq": (62 * 4, 64),
        "text/minilm": (384,), "text/tfidf": (256,), "meta/year": (14,), "meta/language": (13,),
    }
    assert {name: tuple(info.shape) for name, info in sets.items()} == expected_shapes
    table = store.load(sorted(sets))
    assert table.ids.tolist() == [str(i) for i in range(1, 10)]
    for row, item in enumerate(table.ids):
        visual, audio = EXPECTED_STATUS[item]
        for name in sets:
            status = table.status[name][row]
            if name.startswith("visual/"):
                assert status.startswith(visual), (item, name, status)
                assert table.valid[name][row] == (visual in ("ok", "partial: only "))
            if name.startswith("audio/"):
                assert status.startswith(audio), (item, name, status)
                assert table.valid[name][row] == (audio.startswith(("ok", "partial")))
            if not table.valid[name][row]:
                assert not table.features[name][row].any()  # zeros where invalid
    ok = table.ids.tolist().index("1")
    assert table.lengths["visual/effnet_frames"][ok] == 4
    assert table.lengths["audio/logmel_seq"][ok] == 2 * 4  # 2 s of audio: 2 windows x 4 steps
    assert table.lengths["audio/logmel_seq"][table.ids.tolist().index("7")] == 2 * 4
    effnet = table.features["visual/effnet"][ok]
    assert np.allclose(effnet, table.features["visual/effnet_frames"][ok].astype(np.float32).mean(0), atol=1e-2)
    # text and meta: every item has text; year from the column or the title; language where given
    assert table.valid["text/minilm"].all()
    assert table.valid["meta/year"].tolist() == [True, True, True, False, True, True, True, False, True]
    assert table.valid["meta/language"].tolist() == [True, True, True, False, False, True, False, False, True]
    # provenance
    attrs = sets["visual/effnet"].attrs
    assert attrs["weights_sha256"].startswith("579344248a93") and "timm" in attrs["library_versions"]
    assert sets["audio/logmel_seq"].attrs["audio_sample_rate"] == 16000
    assert summary["processed"] == 9 and summary["failed"] == 3 and summary["exit_code"] == 0
    assert summary["by_status"] == {"empty file": 1, "missing file": 1, "no audio track": 1, "no video": 1,
                                    "not a video": 1, "ok": 2, "partial": 2}
    assert summary["shards_written"] == 3
    # the failed items, each with its status, in the summary and its readable text
    assert [(f["id"], f["status"].split(":")[0]) for f in summary["failed_items"]] == [
        ("4", "empty file"), ("5", "not a video"), ("8", "missing file")]
    assert "    8: missing file: " in format_summary(summary)


def test_each_id_holds_its_own_tone_and_its_own_frames(full_run, collection):
    """Items 1 and 2 carry 440 and 880 Hz tones and different frames: each id's log-mel peak is
    its own tone's mel band, and each id's low-level rows are the statistics of its own video's
    frames (brute force: decode them again here), so a row written under the wrong id fails."""
    import torchaudio

    from cinefuse.extract.backbones.lowlevel import frame_statistics
    from cinefuse.extract.decode import sample_frames

    store_path, config, _ = full_run
    table = open_store(store_path).load(["audio/logmel_stats", "visual/lowlevel_frames", "visual/lowlevel"])
    row = {item: k for k, item in enumerate(table.ids.tolist())}
    # the mel band whose filter responds most at each tone (VGGish front end: 400-point STFT at 16 kHz)
    fbanks = torchaudio.functional.melscale_fbanks(201, 125.0, 7500.0, 64, 16000).numpy()  # (freq bins, bands)
    band = {hz: int(fbanks[round(hz * 400 / 16000)].argmax()) for hz in (440, 880)}
    assert band[440] != band[880]
    for item, hz in (("1", 440), ("2", 880)):
        means = table.features["audio/logmel_stats"][row[item], :64]  # per-band mean log-mel
        assert int(means.argmax()) == band[hz], (item, hz)
    d = collection.parent
    stats = {}
    for item, video in (("1", "good1.mp4"), ("2", "good2.mp4"), ("3", "silent.mp4"), ("7", "badaudio.mp4")):
        frames = sample_frames(str(d / video), config.frames, 224, config.frame_sampling).frames
        stats[item] = frame_statistics(frames)
        stored = table.features["visual/lowlevel_frames"][row[item]]
        assert np.array_equal(stored, stats[item]), item
        means = stats[item].mean(0)
        assert np.allclose(table.features["visual/lowlevel"][row[item], :4], means[:4], atol=1e-6), item
    assert not np.array_equal(stats["1"], stats["2"])  # the check can tell the two items apart


def test_audio_coverage_and_tiny_pictures_reach_the_store(tmp_path):
    """Each honest status lands in the store under its own id, with the validity it implies."""
    encode_video(tmp_path / "dead.mp4", seconds=11.2, fps=5, silent_after=4.65)
    truncate_audio_at(encode_video(tmp_path / "ten.mp4", seconds=10, fps=5, faststart=True), tmp_path / "cut.mp4", 1.6)
    encode_video(tmp_path / "mute.mp4", seconds=3, silent_after=0.0)
    encode_video(tmp_path / "dot.mkv", seconds=1, size=(1, 1), pix_fmt="yuv444p")
    encode_video(tmp_path / "fine.mp4", seconds=2)
    manifest = write_manifest(tmp_path / "items.csv", [
        dict(id="dead", video="dead.mp4"), dict(id="cut", video="cut.mp4"), dict(id="mute", video="mute.mp4"),
        dict(id="dot", video="dot.mkv"), dict(id="fine", video="fine.mp4")])
    summary = run_extract(ExtractConfig(manifest=str(manifest), store=str(tmp_path / "s"), frames=2, workers=0,
                                        progress=False, **CHEAP))
    table = open_store(tmp_path / "s").load(["audio/logmel_stats", "visual/lowlevel"])
    audio = dict(zip(table.ids.tolist(), zip(table.status["audio/logmel_stats"], table.valid["audio/logmel_stats"])))
    assert audio == {
        "dead": ("partial: 4.7 of 11.2 s (6 of 11 windows digital silence)", True),
        "cut": ("partial: 1.6 of 10.0 s", True),
        "mute": ("silent: the audio track is digital silence throughout (3.0 s)", False),
        "dot": ("ok", True),
        "fine": ("ok", True),
    }
    visual = dict(zip(table.ids.tolist(), table.status["visual/lowlevel"]))
    assert visual["dot"] == "picture too small: 1x1 pixels (at least 16x16 are needed for frame features)"
    assert not table.valid["visual/lowlevel"][table.ids.tolist().index("dot")]
    assert visual["dead"] == visual["fine"] == "ok" and visual["cut"].startswith("partial: only ")
    assert summary["by_status"] == {"partial": 2, "picture too small": 1, "silent": 1, "ok": 1}
    assert summary["failed"] == 0  # each item kept one valid feature set


def test_rerun_resumes_and_overwrite_starts_over(full_run):
    store_path, config, first = full_run
    again = run_extract(config)
    assert again["processed"] == 0 and again["skipped"] == 9 and again["config_hash"] == first["config_hash"]
    changed = run_extract(config.replace(shard_size=9, overwrite=True, visual=["lowlevel"], audio=[], text=[], meta=[]))
    assert changed["processed"] == 9 and changed["shards_written"] == 1
    assert sorted(open_store(store_path).feature_sets()) == ["visual/lowlevel", "visual/lowlevel_frames"]


def test_shard_slices_cover_every_item_once(collection, tmp_path):
    store = tmp_path / "sliced"
    base = ExtractConfig(manifest=str(collection), store=str(store), frames=3, shard_size=2, workers=0,
                         progress=False, **CHEAP)
    parts = [run_extract(base.replace(num_shards=3, shard_index=i)) for i in range(3)]
    assert [p["processed"] for p in parts] == [3, 3, 3]
    whole = run_extract(base)  # the same config: every id is already committed
    assert whole["processed"] == 0 and whole["skipped"] == 9
    reference = run_extract(base.replace(store=str(tmp_path / "whole")))
    assert reference["processed"] == 9
    a, b = open_store(store), open_store(tmp_path / "whole")
    assert sorted(a.feature_sets()) == sorted(b.feature_sets())
    # shards cut differently leave out different all-invalid sets: compare the joined tables
    ta, tb = a.load(sorted(a.feature_sets())), b.load(sorted(b.feature_sets()))
    assert ta.ids.tolist() == tb.ids.tolist() == sorted(str(i) for i in range(1, 10))
    for name in a.feature_sets():
        assert ta.valid[name].tolist() == tb.valid[name].tolist()
        assert np.array_equal(ta.features[name], tb.features[name])  # no model: bit for bit
        valid = ta.valid[name]
        assert ta.status[name][valid].tolist() == tb.status[name][valid].tolist()


def test_text_only_manifest_from_movielens(movielens_small, tmp_path):
    """What evaluate does: MovieLens titles + tags as text, no video column values."""
    import pandas as pd

    movies = pd.read_csv(movielens_small / "movies.csv").head(40)
    tags = pd.read_csv(movielens_small / "tags.csv")
    tag_text = tags.groupby("movieId")["tag"].apply(lambda t: ", ".join(map(str, t)))
    rows = [dict(id=str(m.movieId), video="", title=m.title, plot=tag_text.get(m.movieId, ""))
            for m in movies.itertuples()]
    manifest = write_manifest(tmp_path / "ml.csv", rows)
    summary = run_extract(ExtractConfig(manifest=str(manifest), store=str(tmp_path / "s"), progress=False))
    assert summary["exit_code"] == 0 and summary["failed"] == 0 and summary["by_status"] == {"no video": 40}
    store = open_store(tmp_path / "s")
    # no item has a video: the video and audio sets, all zeros, are not written at all
    assert sorted(store.feature_sets()) == ["meta/year", "text/minilm", "text/tfidf"]  # no language column either
    table = store.load(["text/minilm", "text/tfidf", "meta/year"])
    assert table.ids[0] == "1" and table.valid["text/minilm"].all()
    # years parsed from "Toy Story (1995)": the decade one-hot of movie 1 is the 1990s
    assert table.features["meta/year"][0, 1 + 9] == 1 and table.valid["meta/year"].sum() == 40
    # tf-idf is valid exactly where the movie has tags (or a title with known words)
    with_tags = {str(i) for i in tag_text.index}
    assert all(table.valid["text/tfidf"][k] for k, i in enumerate(table.ids) if i in with_tags)
    minilm = table.features["text/minilm"]
    assert np.allclose(np.linalg.norm(minilm, axis=1), 1, atol=1e-5)


def test_text_only_items_start_no_media_model_and_no_worker(collection, tmp_path):
    """Text-only runs pay for text: no visual model loaded, no decoding worker process."""
    from cinefuse.extract.backbones import effnet
    from cinefuse.extract.reader import ItemDataset, load_items, make_loader
    from cinefuse.extract.runner import prepare_extractor

    text_only = write_manifest(tmp_path / "text.csv", [dict(id="a", title="Heat", plot="A heist in Los Angeles"),
                                                       dict(id="b", title="Up", plot="A house flies away")])
    config = ExtractConfig(manifest=str(text_only), store=str(tmp_path / "s"), workers=2, progress=False)
    _, extractor, _ = prepare_extractor(config, load_items(config), tmp_path / "unused", {})
    assert make_loader(config, ItemDataset(load_items(config), extractor.plan)).num_workers == 0
    with_video = load_items(config.replace(manifest=str(collection)))
    assert make_loader(config, ItemDataset(with_video, extractor.plan)).num_workers == 2
    cached = dict(effnet._CACHE)
    effnet._CACHE.clear()
    try:
        summary = run_extract(config)
        assert effnet._CACHE == {}  # EfficientNet was never built
    finally:
        effnet._CACHE.update(cached)
    assert summary["by_status"] == {"no video": 2} and summary["processed"] == 2
    store = open_store(tmp_path / "s")
    assert "visual/effnet" not in store.feature_sets()  # no valid row: not written
    assert store.load(["text/minilm"]).valid["text/minilm"].all()


def test_strict_stops_at_the_first_failure(collection, tmp_path):
    config = ExtractConfig(manifest=str(collection), store=str(tmp_path / "s"), frames=2, shard_size=2, workers=0,
                           progress=False, strict=True, **CHEAP)
    with pytest.raises(ExtractFailed, match=r"--strict: item '3' \(.*silent.mp4\) failed: no audio track; 1 shard\(s\) before it are committed"):
        run_extract(config)
    assert len(open_store(tmp_path / "s").ids()) == 2


def test_cli_exit_codes(collection, tmp_path, capsys):
    d = collection.parent
    bad = write_manifest(tmp_path / "bad.csv", [dict(id="a", video=str(d / "zero.mp4")),
                                                dict(id="b", video=str(d / "page.mp4"))])
    args = ["extract", "--manifest", str(bad), "--store", str(tmp_path / "s"), "--visual", "lowlevel",
            "--audio", "logmel", "--text", "", "--meta", "year", "--workers", "0", "--no-progress"]
    assert main(args) == 1  # every item failed
    out = capsys.readouterr().out
    assert out.startswith(f"extract: 2 item(s) processed, 0 already in the store, 2 failed, 1 shard(s) written to {tmp_path / 's'}\n")
    assert main(args) == 0  # nothing left to do
    assert main(["extract", "--manifest", str(tmp_path / "nope.csv"), "--store", str(tmp_path / "s")]) == 2
    assert f"manifest {tmp_path / 'nope.csv'} not found" in capsys.readouterr().err
    assert main(["extract", "--manifest", str(bad), "--store", str(tmp_path / "s"), "--visual", "minilm"]) == 2
    assert "unknown visual backbone 'minilm' ('minilm' is a text backbone: list it under text)" in capsys.readouterr().err
    assert main(["extract", "--list-backbones"]) == 0
    assert "openclip:MODEL/PRETRAINED" in capsys.readouterr().out


def test_config_toml(tmp_path):
    path = tmp_path / "extract.toml"
    path.write_text('[extract]\nframes = 8\nvisual = ["lowlevel"]\nworkers = 0\n', encoding="utf-8")
    config = ExtractConfig.from_toml(path, workers=None, batch_size=4)
    assert (config.frames, config.visual, config.workers, config.batch_size) == (8, ["lowlevel"], 0, 4)
    path.write_text("frame = 8\n", encoding="utf-8")
    with pytest.raises(CinefuseError, match=r"unknown extract config key\(s\) \['frame'\]"):
        ExtractConfig.from_toml(path)
    path.write_text('frames = "many"\n', encoding="utf-8")
    with pytest.raises(CinefuseError, match="extract config key 'frames' has the wrong type: 'many'"):
        ExtractConfig.from_toml(path)
    with pytest.raises(CinefuseError, match=r"shard_index must be in \[0, 1\], got 2"):
        ExtractConfig(num_shards=2, shard_index=2)
    # runtime knobs stay out of the hashed feature config
    assert ExtractConfig(workers=4, device="cuda").feature_config() == ExtractConfig().feature_config()


def test_real_media_folder_scan(shared_media, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("clip-video-encode__vid1.mp4", "moviepy__doc_medias__long_examples__example.mp4"):
        (videos / name).symlink_to(shared_media / "video" / name)
    summary = run_extract(ExtractConfig(videos=str(videos), store=str(tmp_path / "s"), frames=4, workers=1,
                                        text=["minilm"], meta=[], progress=False))
    assert summary["by_status"] == {"no audio track": 1, "ok": 1}
    table = open_store(tmp_path / "s").load(["visual/effnet", "audio/logmel_stats", "visual/lowlevel"])
    assert table.ids.tolist() == ["clip-video-encode__vid1", "moviepy__doc_medias__long_examples__example"]
    assert table.valid["visual/effnet"].all() and table.valid["audio/logmel_stats"].tolist() == [True, False]


@pytest.mark.s3
def test_s3_videos_and_s3_store(s3_server, collection, tmp_path):
    client = s3_server.client()
    client.upload_file(str(collection.parent / "good1.mp4"), s3_server.bucket, "videos/good1.mp4")
    manifest = write_manifest(tmp_path / "s3.csv", [
        dict(id="1", video=f"s3://{s3_server.bucket}/videos/good1.mp4", title="Good"),
        dict(id="2", video=f"s3://{s3_server.bucket}/videos/nope.mp4", title="Gone"),
    ])
    uri = f"s3://{s3_server.bucket}/stores/demo"
    config = ExtractConfig(manifest=str(manifest), store=uri, endpoint_url=s3_server.endpoint_url,
                           staging=str(tmp_path / "staging"), frames=2, workers=1, progress=False, **CHEAP)
    summary = run_extract(config)
    assert summary["processed"] == 2 and summary["failed"] == 1
    store = open_store(uri, endpoint_url=s3_server.endpoint_url)
    fa = store.load_feature_set("visual/lowlevel")
    status = dict(zip(fa.ids.tolist(), fa.status.tolist()))
    assert status == {"1": "ok", "2": f"missing s3 object: s3://{s3_server.bucket}/videos/nope.mp4"}
    # a fresh staging folder resumes from the bucket: nothing left to do
    again = run_extract(config.replace(staging=str(tmp_path / "staging2")))
    assert again["processed"] == 0 and again["skipped"] == 2


def test_cli_summary_is_readable_json_on_request_and_agrees_with_the_bar(collection, tmp_path, capsys):
    """The readable summary and --json carry the rates the progress bar showed last, digit for digit."""
    import json
    import re

    d = collection.parent
    manifest = write_manifest(tmp_path / "two.csv", [dict(id="a", video=str(d / "good1.mp4")),
                                                     dict(id="b", video=str(d / "good2.mp4"))])
    args = ["extract", "--manifest", str(manifest), "--visual", "lowlevel", "--audio", "logmel", "--text", "",
            "--meta", "", "--workers", "0", "--frames", "4", "--batch-size", "1"]
    bar_rate = re.compile(r"(\d+\.\d\d items/s, \d+\.\d frames/s)\]")

    assert main([*args, "--store", str(tmp_path / "s1")]) == 0
    captured = capsys.readouterr()
    shown = bar_rate.findall(captured.err)
    assert shown and "100%" in captured.err  # the bar was drawn at the end, with its final figures
    lines = captured.out.splitlines()
    assert lines[0] == f"extract: 2 item(s) processed, 0 already in the store, 0 failed, 1 shard(s) written to {tmp_path / 's1'}"
    assert lines[1].startswith(f"  {shown[-1]} over ") and lines[1].endswith(" s in all)")
    assert lines[2:] == ["        2  ok"]
    assert float(shown[-1].split(", ")[1].split()[0]) > 0

    assert main([*args, "--store", str(tmp_path / "s2"), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["processed"] == 2 and summary["frames"] == 8 and summary["by_status"] == {"ok": 2}
    rates = f"{summary['items_per_second']:.2f} items/s, {summary['frames_per_second']:.1f} frames/s"
    assert rates == bar_rate.findall(captured.err)[-1]
    assert summary["frames_per_second"] == pytest.approx(8 / summary["extract_seconds"])
    assert summary["seconds"] >= summary["extract_seconds"] > 0

    assert main([*args, "--store", str(tmp_path / "s3"), "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["processed"] == 2  # --no-progress: no bar


def test_cli_help_names_the_output_options(capsys):
    with pytest.raises(SystemExit):
        main(["extract", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-progress do not show the progress bar on stderr" in text
    assert "--json print the summary as one JSON object (for scripts) instead of the readable text" in text
