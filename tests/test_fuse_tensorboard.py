"""fuse/tensorboard.py: the event files a run writes hold exactly what metrics.jsonl and
summary.json hold (float32-equal, same steps), the hyper-parameters for the HParams tab, the
prior weight scan; a resumed run's restart mark keeps each curve one line; a folder that cannot
be written costs one warning, never the run.

The files are read back with tensorboardX's protos and the TFRecord framing (length, masked
CRC-32C of it, the event, its masked CRC), every CRC checked; ``curves`` applies TensorBoard's own
rule for a restart: a SessionLog START at step s drops what was read before at steps >= s."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

MODEL = "triplet-cosine-full-concat-mlp"
TRAIN = {"steps": 80, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40}


def read_events(path: Path) -> list:
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    data, pos, events = path.read_bytes(), 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (n,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header)
        body = data[pos + 12:pos + 12 + n]
        assert struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])[0] == masked_crc32c(body)
        events.append(Event.FromString(body))
        pos += 16 + n
    return events


def event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"), key=lambda p: p.name)


def curves(folder: Path) -> tuple[dict, list[int]]:
    """{tag: [(step, value), ...]} of a run folder as TensorBoard reads it (files in name order,
    restarts purged), and the steps of the restart marks."""
    from tensorboardX.proto.event_pb2 import SessionLog

    series: dict[str, list] = {}
    restarts = []
    for path in event_files(folder):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                restarts.append(event.step)
                series = {t: [(s, v) for s, v in points if s < event.step] for t, points in series.items()}
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    series.setdefault(value.tag, []).append((event.step, value.simple_value))
    return series, restarts


def expected_curves(lines: list[dict]) -> dict:
    from cinefuse.fuse.tensorboard import tag

    out: dict[str, list] = {}
    for line in lines:
        for key, value in line.items():
            if key != "step":
                out.setdefault(tag(key), []).append((line["step"], float(np.float32(value))))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("tensorboard")
    env = write_synthetic_store(root, n_items=60, n_users=40, dims={"text/minilm": 6}, shards=1)
    config = small_config(env, train=TRAIN)
    run_fuse(config, root / "w", log=lambda m: None, progress=False, tensorboard=root / "w" / "tb")
    return config, root / "w"


def test_scalars_are_the_metrics_jsonl_values_at_their_steps(trained):
    import optax

    _, w = trained
    lines = [json.loads(x) for x in (w / "runs" / MODEL / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [40, 80]
    series, restarts = curves(w / "tb" / MODEL)
    assert series == expected_curves(lines)
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "val/ndcg10", "val/hr10", "val/u2i_recall20",
            "val/u2i_ndcg10", "val/auc", "speed/steps_per_second", "speed/seconds"} <= set(series)
    # the learning rate is the optax schedule at the step's last update (count step - 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 20, 80, end_value=3e-3 * 0.05)
    assert series["train/learning_rate"] == [(s, float(np.float32(schedule(s - 1)))) for s in (40, 80)]
    assert all(v > 0 for _, v in series["speed/steps_per_second"])
    assert restarts == [1] and len(event_files(w / "tb" / MODEL)) == 1   # a fresh run's mark drops nothing


def test_final_holds_the_hparams_the_summary_and_the_prior_scan(trained):
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    _, w = trained
    summary = json.loads((w / "runs" / MODEL / "summary.json").read_text())
    folder = w / "tb" / MODEL / "final"
    (path,) = event_files(folder)
    plugin = {v.tag: HParamsPluginData.FromString(v.metadata.plugin_data.content)
              for e in read_events(path) for v in e.summary.value if v.metadata.plugin_data.plugin_name == "hparams"}
    hp = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert hp["name"].string_value == MODEL and hp["loss.kind"].string_value == "triplet"
    assert hp["train.learning_rate"].number_value == 3e-3 and hp["train.steps"].number_value == 80
    assert hp["feature_sets"].string_value == '["text/minilm"]' and hp["objective.prior"].bool_value is True
    numeric = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    metrics = {m.name.tag for m in plugin["_hparams_/experiment"].experiment.metric_infos}
    assert metrics == {f"final/{k}" for k in numeric} and "final/val_ndcg10_prior" in metrics
    assert plugin["_hparams_/session_end_info"].session_end_info.status == Status.Value("STATUS_SUCCESS")

    series, restarts = curves(folder)
    assert restarts == []
    for key, value in numeric.items():
        assert series[f"final/{key}"] == [(80, float(np.float32(value)))], key
    for tag, key in (("prior_scan/ndcg10", "prior_weight_scan"), ("prior_scan/u2i_recall20", "prior_weight_scan_u2i")):
        scan = summary[key]
        assert list(scan) == ["0.0", "0.05", "0.1", "0.2", "0.4", "0.8"]
        assert series[tag] == [(s, float(np.float32(v))) for s, v in zip([0, 50, 100, 200, 400, 800], scan.values())]
    (text,) = [v for e in read_events(path) for v in e.summary.value if v.tag == "record/text_summary"]
    record = json.loads(text.tensor.string_val[0].decode())
    assert record == json.loads((w / "runs" / MODEL / "config.json").read_text())


def test_a_resumed_run_keeps_each_curve_one_line(trained, tmp_path):
    """Killed after its checkpoint at 40 with events at 80 already written: the resumed run marks
    the restart at 41, so TensorBoard keeps one point per step, the resumed run's."""
    from cinefuse.fuse.train import run_fuse

    config, whole = trained
    w = tmp_path / "w"
    shutil.copytree(whole, w)
    run = w / "runs" / MODEL
    for gone in (run / "params", run / "checkpoints" / "80"):
        shutil.rmtree(gone)
    (run / "summary.json").unlink()
    said = []
    run_fuse(config, w, log=said.append, progress=False, tensorboard=w / "tb")
    assert f"resuming {MODEL} from step 40" in said
    files = event_files(w / "tb" / MODEL)
    assert len(files) == 2 and files[0].name == event_files(whole / "tb" / MODEL)[0].name
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    series, restarts = curves(w / "tb" / MODEL)
    assert series == expected_curves(lines)
    assert [s for s, _ in series["train/loss"]] == [40, 80]
    assert restarts == [1, 41]
    assert len(event_files(w / "tb" / MODEL / "final")) == 1      # replaced, not added to


def test_an_unwritable_folder_is_one_warning_and_nothing_raised(tmp_path):
    from cinefuse.fuse.tensorboard import Boards

    blocker = tmp_path / "tb"
    blocker.write_text("a file where the folder should be")
    said = []
    boards = Boards(blocker, ["a", "b@seed1"], 0, said.append)
    for step in (40, 80):
        boards.scalars(0, {"step": step, "loss": 1.0})
        boards.scalars(1, {"step": step, "loss": 2.0})
    boards.final(0, {"steps": 80, "val_ndcg10": 0.5}, {"name": "a"})
    boards.close()
    assert len(said) == 1, said
    assert said[0].startswith(f"warning: TensorBoard events not written to {blocker / 'a'} (")
    assert said[0].endswith("); training goes on without them (--no-tensorboard turns them off)")
    assert blocker.read_text() == "a file where the folder should be"


def test_a_run_that_fails_before_its_first_checkpoint_takes_its_events_away(tmp_path):
    from cinefuse.fuse.tensorboard import Boards

    (tmp_path / "w").mkdir()
    boards = Boards(tmp_path / "w" / "tensorboard", ["m"], 0, print)
    boards.scalars(0, {"step": 40, "loss": 1.0})
    assert len(event_files(tmp_path / "w" / "tensorboard" / "m")) == 1
    boards.discard()
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == []


def test_the_cli_folder_option(tmp_path):
    from cinefuse.cli import build_parser
    from cinefuse.fuse.cli import tensorboard_folder

    base = ["fuse", "--workdir", str(tmp_path / "w")]
    parse = build_parser().parse_args
    assert tensorboard_folder(parse(base)) == tmp_path / "w" / "tensorboard"
    assert tensorboard_folder(parse([*base, "--tensorboard", str(tmp_path / "tb")])) == tmp_path / "tb"
    assert tensorboard_folder(parse([*base, "--no-tensorboard"])) is None
