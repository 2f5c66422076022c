"""TensorBoard event files of a training run, one folder per model (``tensorboard --logdir DIR``;
``cinefuse fuse`` writes them to ``W/tensorboard`` unless ``--no-tensorboard``).

``DIR/<model>/``: at every validation (``train.eval_every``) the numbers of the model's
metrics.jsonl line, as scalars at that step (``tag``): ``train/<name>`` for the loss and the
objective's terms, the gradient norm and the learning rate the step's last update used (the
optax schedule); ``val/<name>`` for item-to-item nDCG@10 and HR@10, user-to-item Recall@20 and
nDCG@10 and the genre-pair AUC and mean distances; ``speed/steps_per_second`` (training steps
since the previous validation over their seconds, validation left out; the first includes the
compilation) and ``speed/seconds`` (since training began). A grid's models and a seed's ``<model>@seed<N>`` are sibling folders, so
TensorBoard overlays them as runs.

``DIR/<model>/final/``: what the model ended with, written whole when it ends (an older one
replaced): its hyper-parameters for the HParams tab (the run's record flattened: ``loss.kind``,
``train.learning_rate``, ...; no endpoint password) with each number of its summary.json as
``final/<key>`` at the last step, the prior weight scans (``prior_scan/ndcg10``,
``prior_scan/u2i_recall20``: the step is the weight x 1000) and the record as text.

A run resumed from its checkpoint at step S begins its new event file with TensorBoard's restart
mark (a SessionLog START at step S + 1): TensorBoard drops what the interrupted run logged after
S, so each curve stays one line with no step twice. File names sort in the order written (the
time in seconds, the host, then nanoseconds), which is the order TensorBoard reads them in.

Writes are synchronous (tensorboardX's event writer without its background thread, so a failed
write cannot leave training waiting on a full queue), host floats at the validation points only.
Writing never fails training: the first failure gives one warning line and the run goes on
without that folder's events.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

EVENTS = "events.out.tfevents."
FINAL = "final"
SCAN_SCALE = 1000           # a prior scan's step: the weight x 1000 (a TensorBoard step is an integer)
SECTIONS = {"learning_rate": "train", "steps_per_second": "speed", "seconds": "speed"}
SCANS = {"prior_weight_scan": "prior_scan/ndcg10", "prior_weight_scan_u2i": "prior_scan/u2i_recall20"}


def tag(key: str) -> str:
    """The scalar tag of a metrics.jsonl key: ``val_ndcg10`` -> ``val/ndcg10``, ``loss`` ->
    ``train/loss``, ``steps_per_second`` -> ``speed/steps_per_second``."""
    if key.startswith("val_"):
        return "val/" + key[len("val_"):]
    return f"{SECTIONS.get(key, 'train')}/{key}"


def numbers(record: dict) -> dict[str, float]:
    """The plain numbers of a record (no booleans, no nested values, no step; NaN kept: a
    diverging loss shows)."""
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def scan_steps(weights: list[float]) -> list[int]:
    """The steps of a prior scan's weights: weight x 1000, or their order where two would share one."""
    steps = [round(w * SCAN_SCALE) for w in weights]
    return steps if len(set(steps)) == len(steps) else list(range(len(weights)))


def flat_hparams(record: dict, prefix: str = "") -> dict:
    """A run's record as HParams: nested keys joined by dots, lists as JSON, None left out."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, name + "."))
        elif isinstance(value, (str, bool, int, float)):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value)
    return out


class EventFile:
    """One new event file in ``folder`` (made, with its parents, where missing; ``made`` lists
    what this file created), written synchronously."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        from tensorboardX.event_file_writer import EventsWriter

        self.made = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
        folder.mkdir(parents=True, exist_ok=True)
        before = set(folder.glob(EVENTS + "*"))
        self.writer = EventsWriter(str(folder / "events"), f".{time.time_ns()}")
        self.made += sorted(set(folder.glob(EVENTS + "*")) - before)
        if purge_step is not None:
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            self.writer.write_event(Event(wall_time=time.time(), step=purge_step,
                                          session_log=SessionLog(status=SessionLog.START)))

    def add(self, step: int, *summaries) -> None:
        from tensorboardX.proto.event_pb2 import Event

        for summary in summaries:
            self.writer.write_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalars(self, step: int, values: dict[str, float], flush: bool = True) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        self.add(step, Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()]))
        if flush:                   # on disk for a TensorBoard watching the run
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Boards:
    """The event files of one group's members, ``root/<name>`` each (``root`` None: none).
    ``scalars(k, record)`` at each validation; ``final(k, summary, record)`` at the end;
    ``discard()`` takes away what this run wrote (a run that failed before its first checkpoint
    leaves nothing); ``close()``."""

    def __init__(self, root, names: list[str], start_step: int, log):
        self.root = None if root is None else Path(root)
        self.names, self.start_step, self.log = names, start_step, log
        self.files: dict[int, EventFile | None] = {}
        self.made: list[Path] = []
        self.warned = False

    def scalars(self, k: int, record: dict) -> None:
        if self.root is None or self.files.get(k, True) is None:
            return
        try:
            if k not in self.files:
                self.files[k] = None
                self.files[k] = EventFile(self.root / self.names[k], purge_step=self.start_step + 1)
                self.made += self.files[k].made
            self.files[k].scalars(record["step"], {tag(key): v for key, v in numbers(record).items()})
        except Exception as exc:  # noqa: BLE001 (no event file is worth a training run)
            self.files[k] = None
            self._warn(self.root / self.names[k], exc)

    def final(self, k: int, summary: dict, record: dict) -> None:
        """``root/<name>/final``: HParams, the summary's numbers, the prior scans, the record."""
        if self.root is None:
            return
        folder = self.root / self.names[k] / FINAL
        try:
            for old in folder.glob(EVENTS + "*"):
                old.unlink()
            events = EventFile(folder)
            self.made += events.made
            _write_final(events, summary, record)
            events.close()
        except Exception as exc:  # noqa: BLE001
            self._warn(folder, exc)

    def discard(self) -> None:
        self.close()
        for path in reversed(self.made):
            try:
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
            except OSError:
                pass        # a folder something else wrote into stays

    def close(self) -> None:
        for k, events in self.files.items():
            if events is not None:
                try:
                    events.close()
                except Exception as exc:  # noqa: BLE001
                    self._warn(self.root / self.names[k], exc)
                self.files[k] = None

    def _warn(self, folder: Path, exc: Exception) -> None:
        if not self.warned:
            self.warned = True
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            self.log(f"warning: TensorBoard events not written to {folder} ({reason}); training goes on "
                     "without them (--no-tensorboard turns them off)")


def _write_final(events: EventFile, summary: dict, record: dict) -> None:
    from tensorboardX.summary import hparams, text

    final = {f"final/{key}": v for key, v in numbers(summary).items()}
    experiment, start, end = hparams(flat_hparams(record), final)
    step = int(summary.get("steps", 0))
    events.add(step, experiment, start, end)
    events.scalars(step, final, flush=False)
    for key, name in SCANS.items():
        scan = summary.get(key) or {}
        for s, value in zip(scan_steps([float(w) for w in scan]), scan.values()):
            events.scalars(s, {name: float(value)}, flush=False)
    body = json.dumps(record, indent=2, sort_keys=True, default=str)
    events.add(step, text("record", "    " + body.replace("\n", "\n    ")))
