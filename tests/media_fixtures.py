"""Small test media encoded with PyAV, and the bad inputs extract must survive.

Every video frame carries its own index as ``BITS`` horizontal bands (white = 1, most significant
bit at the top), so a test can read back exactly which frame a sampler returned, after FFmpeg's
scaling and centre crop (bands span the full width and the short side survives the crop). Audio is
a pure sine tone, so a test can check the sample rate from the spectrum.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 8


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 picture encoding ``index`` in BITS horizontal bands."""
    picture = np.zeros((height, width, 3), np.uint8)
    edges = np.linspace(0, height, BITS + 1).round().astype(int)
    for bit in range(BITS):
        if (index >> (BITS - 1 - bit)) & 1:
            picture[edges[bit]:edges[bit + 1]] = 255
    return picture


def read_index(picture: np.ndarray) -> int:
    """Inverse of :func:`index_frame` for a decoded (possibly rescaled) RGB picture."""
    height = picture.shape[0]
    edges = np.linspace(0, height, BITS + 1).round().astype(int)
    value = 0
    for bit in range(BITS):
        band = picture[edges[bit]:edges[bit + 1]]
        margin = max(1, (edges[bit + 1] - edges[bit]) // 4)  # skip the blurred band borders
        value = (value << 1) | int(band[margin:-margin].mean() > 127)
    return value


def encode_video(
    path: str | Path,
    seconds: float = 2.0,
    fps: int | Fraction = 10,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    sample_rate: int = 44100,
    channels: int = 2,
    tone_hz: float = 1000.0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    gop: int = 10,
    audio_seconds: float | None = None,
    faststart: bool = False,
    silent_after: float | None = None,
) -> Path:
    """Encode a video whose frame ``k`` shows ``k`` (see :func:`index_frame`), with an optional
    sine-tone audio track; the container follows the suffix (.mp4, .mkv, ...). ``faststart``
    puts the MP4 index first, so a truncated copy still opens and fails part-way.
    ``silent_after``: every audio sample from that second on is exactly zero (digital silence, as
    a real file whose track goes dead part-way)."""
    path = Path(path)
    width, height = size
    count = int(round(seconds * float(fps)))
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.gop_size = gop
        if codec == "libx264":
            video.codec_context.options = {"crf": "12", "preset": "ultrafast", "bf": "0"}
        stream_audio = None
        if audio:
            stream_audio = container.add_stream("aac", rate=sample_rate)
            stream_audio.layout = "stereo" if channels == 2 else "mono"
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(index_frame(index, width, height), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, 1) / Fraction(fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if stream_audio is not None:
            total = int(round((audio_seconds if audio_seconds is not None else seconds) * sample_rate))
            block = 1024
            t = np.arange(total) / sample_rate
            tone = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            if silent_after is not None:
                tone[int(round(silent_after * sample_rate)):] = 0.0
            for start in range(0, total, block):
                chunk = tone[start:start + block]
                planar = np.repeat(chunk[None, :], channels, axis=0)
                frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo" if channels == 2 else "mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for packet in stream_audio.encode(frame):
                    container.mux(packet)
            for packet in stream_audio.encode(None):
                container.mux(packet)
    return path


def write_zero_byte(path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_html(path: str | Path) -> Path:
    """An error page saved under a video name, as scrapers do."""
    path = Path(path)
    path.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                    "<body><h1>Not Found</h1></body></html>\n", encoding="utf-8")
    return path


def write_truncated(source: str | Path, path: str | Path, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``source``'s bytes (a download cut short)."""
    data = Path(source).read_bytes()
    path = Path(path)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_audio_after(source: str | Path, path: str | Path, seconds: float) -> Path:
    """Copy ``source`` with the payload of every audio packet after ``seconds`` overwritten by
    noise: the video stays intact and the audio track fails part-way."""
    shutil.copyfile(source, path)
    spans = []
    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.pts is not None and packet.pos is not None and packet.pos >= 0 and packet.size:
                if float(packet.pts * stream.time_base) >= seconds:
                    spans.append((packet.pos, packet.size))
    rng = np.random.default_rng(0)
    with open(path, "r+b") as handle:
        for pos, size in spans:
            handle.seek(pos)
            handle.write(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return Path(path)


def truncate_audio_at(source: str | Path, path: str | Path, seconds: float) -> Path:
    """The bytes of ``source`` (an MP4 written with ``faststart``, video packets before audio
    ones, as :func:`encode_video` muxes them) up to its first audio packet at or after
    ``seconds``: the index and every video frame survive, the audio track decodes only its first
    ``seconds`` and then ends without an error, as in a download cut short."""
    with av.open(str(source)) as container:
        stream = container.streams.audio[0]
        cut = min(packet.pos for packet in container.demux(stream)
                  if packet.pts is not None and packet.size and float(packet.pts * stream.time_base) >= seconds)
    path = Path(path)
    path.write_bytes(Path(source).read_bytes()[:cut])
    return path
