"""Decoding with PyAV: frames sampled uniformly over the whole video, audio as 16 kHz windows.

Frames. A demux-only scan of the video stream (no decoding, milliseconds for a trailer) gives the
presentation timestamp of every frame and which packets are keyframes. That scan, not the
container header, defines the start, the end and the frame count, so a container that reports no
frame count or a wrong duration is still sampled over its real length. Targets are the centres of
``frames`` equal slices of that span. In ``keyframe`` mode a target whose nearest keyframe lies
within half a slice takes that keyframe: one seek and one decoded picture, which is what makes 16
frames of a 2-minute 1080p trailer cost well under a second. (``skip_frame=NONKEY`` looks like the
obvious tool but is slower here: an H.264 decoder with B-frame delay then holds the keyframe back
until the next keyframe arrives, reading a whole group of pictures per target.) Other targets (and every target in
``exact`` mode) seek to the keyframe before them and decode up to the exact frame, continuing
without a seek when the next target lies later in the same group of pictures. Streams without
timestamps fall back to frame indices over one sequential decode. Frames are scaled by FFmpeg
straight to the short side the backbones need, then centre-cropped, so full-size RGB pictures
never exist in Python.

Audio is resampled to mono at ``audio_sample_rate`` by FFmpeg's resampler, cut into windows of
``audio_window_seconds``; at most ``audio_max_seconds`` worth of windows are kept, spread evenly
over the whole track. Coverage is checked as frames are: the seconds that decoded to sound are
compared with the track's declared length, so a track cut short (a truncated download decodes
quietly up to the cut) or one that goes digitally silent part-way (every sample exactly zero, a
dead track rather than a quiet scene) gets ``partial: 4.6 of 11.2 s (...)`` instead of "ok".
Digital silence counts when a run of exact zeros lasts at least one window; a track that is
nothing but digital silence is ``silent: ...`` (no usable audio). "ok" means the sound covers the
declared length to within ``max(one window, 2%)``: AAC priming and a header rounded to the
video's length are normal, a missing second of a ten-second clip is not.

Failures raise :class:`MediaError` whose message is the item's status ("missing file", "empty
file", "not a video", "no video stream" (also for a file whose only picture is attached cover
art, as in an mp3), ...). Damage that still leaves something decoded returns what decoded with
a status starting ``partial:``.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

SNIFF_BYTES = 512
MIN_PICTURE_SIDE = 16  # smaller pictures carry a colour, not an image: upscaled they fool the models
COVERAGE_TOLERANCE = 0.02  # of the declared length (and at least one window), see the module doc


class MediaError(Exception):
    """Nothing usable decoded; ``str(exc)`` is the status recorded for the item."""


@dataclass
class FrameSample:
    frames: np.ndarray  # (T, S, S, 3) uint8, T <= requested frames (distinct frames only)
    times: np.ndarray  # (T,) float64 seconds from the stream start, ascending
    targets: np.ndarray  # (N,) float64 seconds the sampler aimed at
    duration: float  # seconds, from the packet scan
    frame_count: int  # frames found by the packet scan
    status: str = "ok"
    keyframe_hits: int = 0  # targets served by a keyframe


@dataclass
class AudioSample:
    windows: np.ndarray  # (W, L) float32 mono at the requested rate
    starts: np.ndarray  # (W,) float64 seconds
    duration: float  # seconds of audio decoded
    sample_rate: int
    status: str = "ok"
    covered: float = 0.0  # seconds that decoded to sound (digital silence left out)
    expected: float = 0.0  # seconds the track should hold (its declared length, or what decoded)
    silent: np.ndarray | None = None  # (W,) bool: the window is digital silence (every sample 0)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def check_file(path: str) -> None:
    """Cheap checks that name the common bad inputs before FFmpeg sees them."""
    if not os.path.exists(path):
        raise MediaError(f"missing file: {path}")
    if os.path.isdir(path):
        raise MediaError(f"not a video: {path} is a folder")
    if os.path.getsize(path) == 0:
        raise MediaError("empty file: 0 bytes")
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")):
        raise MediaError("not a video: the file is text (HTML, XML or JSON), perhaps an error page saved as video")


def open_container(path: str):
    import av

    check_file(path)
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        size = os.path.getsize(path)
        if _known_container(path):
            raise MediaError(f"damaged video: the container header is there but FFmpeg cannot open it "
                             f"(truncated download? {size} bytes; {_short(exc)})") from exc
        raise MediaError(f"not a video: FFmpeg cannot open it ({_short(exc)}; {size} bytes)") from exc


def _known_container(path: str) -> bool:
    """True when the first bytes carry a video container signature (MP4/MOV, Matroska/WebM,
    AVI, FLV, MPEG-PS/TS, Ogg)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(b"\x1a\x45\xdf\xa3")
            or head.startswith(b"RIFF") or head.startswith(b"FLV") or head.startswith(b"\x00\x00\x01\xba")
            or head[:1] == b"\x47" or head.startswith(b"OggS"))


# ----------------------------------------------------------------------------------------------
# frames
# ----------------------------------------------------------------------------------------------
@dataclass
class _Scan:
    pts: list[int]  # sorted presentation timestamps of the frames shown (stream time base)
    keyframes: list[int]  # sorted pts of the keyframes shown (targets may take these)
    decode_keys: list[int]  # sorted pts of every keyframe, shown or not (where decoding can start)
    count: int  # packets seen (frames)
    has_pts: bool
    error: str | None  # demux error that ended the scan early


def _scan_packets(container, stream) -> _Scan:
    import av

    pts: list[int] = []
    keys: list[int] = []
    decode_keys: list[int] = []
    count = 0
    missing = 0
    error = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # the flush packet at the end
            count += 1
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                missing += 1
                continue
            if packet.is_keyframe:
                decode_keys.append(stamp)
            if packet.is_discard:
                continue  # before the edit list's start: decoded for reference, never shown
            pts.append(stamp)
            if packet.is_keyframe:
                keys.append(stamp)
    except (av.error.FFmpegError, OSError) as exc:
        error = _short(exc)
    pts.sort()
    keys.sort()
    decode_keys.sort()
    return _Scan(pts, keys, decode_keys, count, has_pts=bool(pts) and missing == 0, error=error)


def _resize_crop(frame, size: int, interpolation) -> np.ndarray:
    """Scale the short side to ``size`` inside FFmpeg, centre-crop to (size, size, 3) uint8."""
    w, h = frame.width, frame.height
    if w <= h:
        nw, nh = size, max(size, int(round(h * size / w)))
    else:
        nw, nh = max(size, int(round(w * size / h))), size
    rgb = frame.reformat(width=nw, height=nh, format="rgb24", interpolation=interpolation).to_ndarray()
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(rgb[top:top + size, left:left + size])


def uniform_targets(start: float, end: float, count: int) -> np.ndarray:
    """Centres of ``count`` equal slices of [start, end)."""
    span = max(end - start, 0.0)
    return start + (np.arange(count) + 0.5) * span / count


def video_stream(container):
    """The first video stream that is not an attached picture (the cover art of an mp3, m4a or
    mkv, one still image that is no video); MediaError when there is none."""
    import av

    streams = list(container.streams.video)
    moving = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic]
    if moving:
        return moving[0]
    if streams:
        raise MediaError("no video stream: the file holds only an attached picture (cover art), no video track")
    raise MediaError("no video stream: the file holds no video track")


def sample_frames(path: str, frames: int, size: int, mode: str = "keyframe", threads: int = 1) -> FrameSample:
    import av

    container = open_container(path)
    try:
        stream = video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if 0 < min(width, height) < MIN_PICTURE_SIDE:
            raise MediaError(f"picture too small: {width}x{height} pixels (at least "
                             f"{MIN_PICTURE_SIDE}x{MIN_PICTURE_SIDE} are needed for frame features)")
        stream.thread_count = threads
        stream.thread_type = "SLICE" if threads != 1 else "NONE"  # frame threads add latency per seek
        scan = _scan_packets(container, stream)
        if scan.count == 0:
            raise MediaError(f"not a video: no video packets could be read ({scan.error or 'empty stream'})")
        interpolation = av.video.reformatter.Interpolation.AREA
        if scan.has_pts:
            sample = _sample_by_pts(container, stream, scan, frames, size, mode, interpolation)
        else:
            sample = _sample_by_index(container, stream, scan, frames, size, interpolation)
        indexed = int(stream.frames or 0)  # frames the container's index lists (0: unknown)
        if sample.status == "ok" and scan.error:
            sample.status = f"partial: the stream ends early at {sample.duration:.1f} s ({scan.error})"
        elif sample.status == "ok" and indexed and scan.count < indexed - max(2, 0.02 * indexed):
            # (a frame or two short is normal: AVI indexes dropped frames as empty entries)
            sample.status = (f"partial: only {scan.count} of the {indexed} frames the index lists are in the file "
                             f"(truncated?); sampled the first {sample.duration:.1f} s")
        return sample
    finally:
        container.close()


def _sample_by_pts(container, stream, scan: _Scan, frames: int, size: int, mode: str, interpolation) -> FrameSample:
    import av

    tb = stream.time_base or Fraction(1, 90000)
    pts = scan.pts
    step = int(np.median(np.diff(pts))) if len(pts) > 1 else 0
    start, end = pts[0], pts[-1] + max(step, 0)
    targets = uniform_targets(start, end, frames)
    tolerance = 0.5 * (end - start) / frames

    # the frame (pts) each target takes
    wanted: list[int] = []
    from_key: set[int] = set()
    for target in targets:
        choice = None
        if mode == "keyframe" and scan.keyframes:
            i = bisect.bisect_left(scan.keyframes, target)
            near = [scan.keyframes[j] for j in (i - 1, i) if 0 <= j < len(scan.keyframes)]
            key = min(near, key=lambda k: abs(k - target))
            if abs(key - target) <= tolerance and key not in wanted:
                choice = key
                from_key.add(key)
        if choice is None:
            i = bisect.bisect_left(pts, target)
            near = [pts[j] for j in (i - 1, i) if 0 <= j < len(pts)]
            choice = min(near, key=lambda p: (abs(p - target), p))
        if choice not in wanted:
            wanted.append(choice)
    wanted.sort()

    out: list[np.ndarray] = []
    times: list[float] = []
    errors: list[str] = []
    cursor: int | None = None  # pts of the last frame decoded without a seek since
    decoder = None
    for want in wanted:
        starts = scan.decode_keys
        key_before = starts[bisect.bisect_right(starts, want) - 1] if starts and starts[0] <= want else None
        keep_going = cursor is not None and cursor < want and (key_before is None or key_before <= cursor)
        try:
            if not keep_going:
                container.seek(int(want), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
            got = None
            for frame in decoder:
                if frame.pts is None:
                    continue
                cursor = frame.pts
                if frame.pts >= want:
                    got = frame
                    break
            if got is None:
                cursor = None
                errors.append(f"no frame at {float(want * tb):.2f} s")
                continue
            out.append(_resize_crop(got, size, interpolation))
            times.append(float((got.pts - start) * tb))
        except (av.error.FFmpegError, OSError) as exc:
            cursor = None
            errors.append(f"decode error at {float((want - start) * tb):.2f} s: {_short(exc)}")
            if len(errors) >= 3:
                break
    duration = float((end - start) * tb)
    if not out:
        raise MediaError(f"decode error: no frame decoded ({errors[0] if errors else 'empty stream'})")
    status = "ok"
    if errors:
        status = f"partial: {len(out)} of {len(wanted)} frames decoded ({errors[0]})"
    return FrameSample(
        frames=np.stack(out), times=np.array(times), targets=(targets - start) * float(tb),
        duration=duration, frame_count=len(pts), status=status,
        keyframe_hits=sum(1 for w in wanted if w in from_key),
    )


def _sample_by_index(container, stream, scan: _Scan, frames: int, size: int, interpolation) -> FrameSample:
    """No timestamps (raw streams): take frames by index over one sequential decode."""
    import av

    n = scan.count
    wanted = sorted({min(n - 1, int((k + 0.5) * n / frames)) for k in range(frames)})
    container.seek(0)
    out, times, error = [], [], None
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    index = -1
    try:
        for frame in container.decode(stream):
            index += 1
            if index in wanted:
                out.append(_resize_crop(frame, size, interpolation))
                times.append(index / rate)
                if len(out) == len(wanted):
                    break
    except (av.error.FFmpegError, OSError) as exc:
        error = _short(exc)
    if not out:
        raise MediaError(f"decode error: no frame decoded ({error or 'empty stream'})")
    status = "ok" if not error and len(out) == len(wanted) else f"partial: {len(out)} of {len(wanted)} frames decoded ({error})"
    return FrameSample(
        frames=np.stack(out), times=np.array(times), targets=(np.arange(frames) + 0.5) * n / frames / rate,
        duration=n / rate, frame_count=n, status=status,
    )


# ----------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------
FULL_DECODE_SECONDS = 900.0  # longer tracks (feature films) are sampled by seeking per window


def sample_audio(path: str, sample_rate: int, window_seconds: float, max_seconds: float,
                 full_decode_seconds: float = FULL_DECODE_SECONDS) -> AudioSample:
    """Decode the first audio track to mono ``sample_rate``, cut into windows spread over it.

    Tracks up to ``full_decode_seconds`` (by the container's word) are decoded whole, so the
    real length decides where the windows go even when the header is wrong; longer ones seek to
    each window instead of decoding hours of audio to keep a minute of it."""
    import av

    container = open_container(path)
    try:
        if not container.streams.audio:
            raise MediaError("no audio track")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if declared > full_decode_seconds and declared > max_seconds:
            return _sample_audio_by_seeking(container, stream, declared, sample_rate, window_seconds, max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        error = None
        decoded = 0.0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                decoded = float(frame.time or 0.0) + frame.samples / float(frame.sample_rate or sample_rate)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            error = f"audio decode error at {decoded:.2f} s: {_short(exc)}"
    finally:
        container.close()
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    window = int(round(window_seconds * sample_rate))
    if samples.size == 0:
        raise MediaError(error or "empty audio track: no samples decoded")
    windows, starts = cut_windows(samples, window, max(1, int(max_seconds / window_seconds + 1e-9)))
    silent = ~windows.any(axis=1)
    decoded_seconds = samples.size / sample_rate
    covered = (samples.size - silent_samples(samples, window)) / sample_rate
    expected = max(declared, decoded_seconds)
    status = coverage_status(covered, expected, window_seconds, int(silent.sum()), len(silent), error)
    return AudioSample(windows, starts / sample_rate, decoded_seconds, sample_rate, status, covered, expected, silent)


def silent_samples(samples: np.ndarray, min_run: int) -> int:
    """How many samples lie in runs of exact zeros at least ``min_run`` long (digital silence)."""
    zero = np.concatenate([[False], samples == 0, [False]])
    edges = np.flatnonzero(zero[1:] != zero[:-1])  # run starts and ends, alternating
    lengths = edges[1::2] - edges[0::2]
    return int(lengths[lengths >= min_run].sum())


def coverage_status(covered: float, expected: float, window_seconds: float, silent_windows: int, windows: int,
                    error: str | None) -> str:
    """``ok`` when sound covers the expected length (see the module doc), else ``partial: 1.6 of
    10.0 s`` with the reasons known (a decode error, windows of digital silence)."""
    if covered <= 0:
        raise MediaError(f"silent: the audio track is digital silence throughout ({expected:.1f} s)")
    short = covered < expected - max(window_seconds, COVERAGE_TOLERANCE * expected)
    if error is None and not short:
        return "ok"
    reasons = ([error] if error else []) + (
        [f"{silent_windows} of {windows} windows digital silence"] if silent_windows else [])
    return f"partial: {covered:.1f} of {expected:.1f} s" + (f" ({'; '.join(reasons)})" if reasons else "")


def _declared_seconds(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return float(container.duration or 0) / 1_000_000


def _sample_audio_by_seeking(container, stream, declared: float, sample_rate: int, window_seconds: float,
                             max_seconds: float) -> AudioSample:
    import av

    window = int(round(window_seconds * sample_rate))
    count = max(1, int(max_seconds / window_seconds + 1e-9))
    starts = np.linspace(0.0, max(declared - window_seconds, 0.0), count)
    tb = stream.time_base
    windows, kept, errors = [], [], []
    for start in starts:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        collected: list[np.ndarray] = []
        have = 0
        skip = None
        try:
            container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if skip is None:  # the seek lands at or before the start: drop the lead-in
                    skip = max(0, int(round((start - float(frame.time or 0.0)) * sample_rate)))
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    if skip:
                        dropped = min(skip, chunk.size)
                        chunk, skip = chunk[dropped:], skip - dropped
                    collected.append(chunk)
                    have += chunk.size
                if have >= window:
                    break
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            errors.append(f"audio decode error at {start:.2f} s: {_short(exc)}")
        if have >= window // 2:  # the track may end a little before its declared length: pad the tail
            samples = np.zeros(window, np.float32)
            joined = np.concatenate(collected)[:window]
            samples[:joined.size] = joined
            windows.append(samples)
            kept.append(start)
    if not windows:
        raise MediaError(errors[0] if errors else "empty audio track: no samples decoded")
    stacked = np.stack(windows)
    silent = ~stacked.any(axis=1)
    # the windows are a sample of the track: each stands for declared / count seconds of it
    covered = declared * int((~silent).sum()) / count
    status = coverage_status(covered, declared, window_seconds, int(silent.sum()), count, errors[0] if errors else None)
    return AudioSample(stacked, np.array(kept), declared, sample_rate, status, covered, declared, silent)


def cut_windows(samples: np.ndarray, window: int, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows when the track fits the cap, else ``max_windows`` windows spread
    evenly from the first to the last sample. A track shorter than one window is zero-padded."""
    total = samples.size
    if total < window:
        padded = np.zeros(window, np.float32)
        padded[:total] = samples
        return padded[None], np.zeros(1)
    possible = total // window
    if possible <= max_windows:
        starts = np.arange(possible) * window
    else:
        starts = np.round(np.linspace(0, total - window, max_windows)).astype(np.int64)
    index = starts[:, None] + np.arange(window)[None, :]
    return samples[index], starts.astype(np.float64)
