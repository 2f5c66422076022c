"""Decoding: frame sampling covers the whole video, audio windows have the right count and rate,
each bad input gives its status. On videos the tests encode (frame k shows k) and on real media."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from cinefuse.extract.decode import (MediaError, cut_windows, sample_audio, sample_frames, silent_samples,
                                     uniform_targets)
from media_fixtures import (corrupt_audio_after, encode_video, read_index, truncate_audio_at, write_html,
                            write_truncated, write_zero_byte)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """5 s, 10 fps (frames 0..49), keyframe every 10 frames, 1 kHz tone at 44.1 kHz stereo."""
    return encode_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=5, fps=10, gop=10)


def test_uniform_targets_are_slice_centres():
    assert np.allclose(uniform_targets(0.0, 10.0, 4), [1.25, 3.75, 6.25, 8.75])


def test_exact_sampling_returns_the_frame_at_each_slice_centre(clip):
    sample = sample_frames(str(clip), 16, 224, mode="exact")
    shown = [read_index(frame) for frame in sample.frames]
    # brute force: frame k is shown during [k/10, (k+1)/10); the sampler takes the frame whose
    # timestamp is nearest each centre (k + 0.5) * 5 / 16 (ties to the earlier frame)
    expected = []
    for target in (np.arange(16) + 0.5) * 5.0 / 16:
        k = int(np.argmin(np.abs(np.arange(50) / 10 - target) + np.arange(50) * 1e-9))
        expected.append(k)
    assert shown == expected
    assert sample.frames.shape == (16, 224, 224, 3) and sample.frames.dtype == np.uint8
    assert sample.frame_count == 50 and sample.duration == pytest.approx(5.0)
    assert np.allclose(sample.times, np.array(expected) / 10)
    assert sample.status == "ok"


def test_keyframe_sampling_covers_the_whole_video_within_half_a_slice(clip):
    sample = sample_frames(str(clip), 16, 224, mode="keyframe")
    shown = np.array([read_index(frame) for frame in sample.frames])
    assert np.all(np.diff(shown) > 0)  # distinct, in order
    assert np.allclose(sample.times, shown / 10)  # the times the sampler reports are the frames shown
    slice_len = 5.0 / 16
    assert len(shown) == 16
    assert np.all(np.abs(sample.times - sample.targets) <= slice_len / 2 + 1e-9)  # each within half a slice
    assert sample.times[0] < slice_len and sample.times[-1] > 5.0 - slice_len  # first and last slice
    # keyframes (0, 10, 20, 30, 40) within half a slice of a target are taken as they are
    assert sample.keyframe_hits == 5 and {0, 10, 20, 30, 40} <= set(shown.tolist())


def test_more_frames_asked_than_the_video_has(tmp_path):
    path = encode_video(tmp_path / "short.mp4", seconds=0.5, fps=10, audio=False)
    sample = sample_frames(str(path), 16, 64, mode="exact")
    assert [read_index(f) for f in sample.frames] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("fps,size,pix_fmt,codec,suffix", [
    (Fraction(30000, 1001), (97, 55), "yuv444p", "libx264", ".mp4"),  # odd size, NTSC rate
    (7, (98, 54), "yuv420p", "mpeg4", ".avi"),  # odd rate, other codec and container
    (25, (48, 80), "yuv420p", "libx264", ".mkv"),  # portrait, Matroska
])
def test_odd_sizes_and_frame_rates_decode(tmp_path, fps, size, pix_fmt, codec, suffix):
    path = encode_video(tmp_path / f"odd{suffix}", seconds=2, fps=fps, size=size, pix_fmt=pix_fmt, codec=codec)
    sample = sample_frames(str(path), 8, 64, mode="exact")
    count = int(round(2 * float(fps)))
    assert sample.status == "ok" and sample.frames.shape == (8, 64, 64, 3)
    assert count - 1 <= sample.frame_count <= count  # the mpeg4 encoder may drop one frame
    assert sample.times[0] < 2 / 8 and sample.times[-1] > 2 - 2 / 8
    if size[0] > size[1]:  # landscape: the index bands survive the centre crop
        shown = [read_index(f) for f in sample.frames]
        assert shown == sorted(set(shown)) and shown[0] < count / 8 and shown[-1] >= count - count / 8 - 1
        if codec == "libx264":  # (AVI has no presentation times; its mpeg4 stream is off by one)
            assert shown == [round(t * float(fps)) for t in sample.times]
    audio = sample_audio(str(path), 16000, 0.96, 60)
    assert audio.windows.shape == (2, 15360)


def test_audio_windows_count_rate_and_cap(clip):
    audio = sample_audio(str(clip), 16000, 0.96, 60.0)
    assert audio.sample_rate == 16000 and audio.status == "ok"
    assert audio.windows.shape == (5, 15360)  # floor(5 s / 0.96 s) windows of 0.96 * 16000 samples
    assert np.allclose(audio.starts, np.arange(5) * 0.96)
    # the 1 kHz tone lands in the 1 kHz FFT bin at 16 kHz (a wrong rate would move the peak)
    spectrum = np.abs(np.fft.rfft(audio.windows[2]))
    assert np.argmax(spectrum) * 16000 / 15360 == pytest.approx(1000, abs=16000 / 15360)
    capped = sample_audio(str(clip), 16000, 0.96, 2.0)  # cap 2 s: 2 windows spread over the track
    assert capped.windows.shape == (2, 15360)
    assert capped.starts[0] == 0 and capped.starts[-1] == pytest.approx(audio.duration - 0.96, abs=1e-3)


def test_cut_windows_spreads_over_the_whole_track():
    samples = np.arange(100, dtype=np.float32)
    windows, starts = cut_windows(samples, 10, 3)
    assert starts.tolist() == [0, 45, 90] and windows[2].tolist() == list(range(90, 100))
    windows, starts = cut_windows(samples, 10, 20)
    assert starts.tolist() == list(range(0, 100, 10))
    windows, starts = cut_windows(samples[:4], 10, 3)  # shorter than a window: one padded window
    assert windows.shape == (1, 10) and windows[0, 4:].sum() == 0


# ---------------------------------------------------------------------------------------------
# bad input: each kind names its reason
# ---------------------------------------------------------------------------------------------
def _status(fn, path):
    with pytest.raises(MediaError) as info:
        fn(str(path))
    return str(info.value)


def test_missing_zero_byte_and_html_files(tmp_path):
    frames = lambda p: sample_frames(p, 4, 64)  # noqa: E731
    assert _status(frames, tmp_path / "nope.mp4") == f"missing file: {tmp_path / 'nope.mp4'}"
    assert _status(frames, write_zero_byte(tmp_path / "zero.mp4")) == "empty file: 0 bytes"
    assert _status(frames, write_html(tmp_path / "page.mp4")).startswith("not a video: the file is text (HTML")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert _status(frames, tmp_path / "noise.mp4").startswith("not a video: FFmpeg cannot open it")


def test_truncated_files(tmp_path, clip):
    # index at the end (PyAV's default): the cut file has no index and cannot be opened
    assert _status(lambda p: sample_frames(p, 4, 64), write_truncated(clip, tmp_path / "cut.mp4", 0.5)).startswith(
        "damaged video: the container header is there")
    # index first: it opens, decodes what is there, and says what was lost
    full = encode_video(tmp_path / "fast.mp4", seconds=5, fps=10, faststart=True)
    cut = write_truncated(full, tmp_path / "cut-fast.mp4", 0.5)
    sample = sample_frames(str(cut), 8, 64, mode="exact")
    assert sample.status.startswith("partial: only ") and "frames the index lists are in the file" in sample.status
    shown = [read_index(f) for f in sample.frames]
    assert shown == sorted(shown) and len(shown) == 8 and shown[-1] < 50
    audio = sample_audio(str(cut), 16000, 0.96, 60)
    assert audio.status.startswith("partial: ") and "audio decode error at" in audio.status
    assert 1 <= audio.windows.shape[0] < 5


def test_video_without_audio(tmp_path):
    path = encode_video(tmp_path / "silent.mp4", seconds=1, audio=False)
    assert sample_frames(str(path), 4, 64).status == "ok"
    assert _status(lambda p: sample_audio(p, 16000, 0.96, 60), path) == "no audio track"


def test_audio_failing_part_way_keeps_what_decoded(tmp_path, clip):
    path = corrupt_audio_after(clip, tmp_path / "bad-audio.mp4", 2.0)
    assert sample_frames(str(path), 8, 64).status == "ok"  # the video is intact
    audio = sample_audio(str(path), 16000, 0.96, 60)
    assert audio.status.startswith("partial: 2.0 of 5.0 s (audio decode error at 2.")
    assert audio.windows.shape == (2, 15360)


# ---------------------------------------------------------------------------------------------
# audio coverage: what decoded to sound, against the track's declared length
# ---------------------------------------------------------------------------------------------
def test_full_track_is_ok_and_covers_its_length(clip):
    audio = sample_audio(str(clip), 16000, 0.96, 60)
    assert audio.status == "ok" and audio.silent.tolist() == [False] * 5
    assert audio.covered == pytest.approx(5.0, abs=0.05) and audio.expected == pytest.approx(5.0, abs=0.05)


def test_audio_going_digitally_silent_part_way(tmp_path):
    """As a real file whose every sample is zero after 4.65 s of 11.2 s."""
    path = encode_video(tmp_path / "dead.mp4", seconds=11.2, fps=5, tone_hz=440, silent_after=4.65)
    assert sample_frames(str(path), 4, 64).status == "ok"
    audio = sample_audio(str(path), 16000, 0.96, 60)
    assert audio.status == "partial: 4.7 of 11.2 s (6 of 11 windows digital silence)"
    # windows 0-4 (to 4.80 s) hold the tone, 5-10 are digital silence
    assert audio.silent.tolist() == [False] * 5 + [True] * 6
    assert audio.covered == pytest.approx(4.65, abs=0.01)
    # long tracks are sampled by seeking: five windows at 0, 2.56, 5.12, 7.68, 10.24 s, three silent
    seek = sample_audio(str(path), 16000, 0.96, 4.8, full_decode_seconds=0)
    assert seek.silent.tolist() == [False, False, True, True, True]
    assert seek.status == "partial: 4.5 of 11.2 s (3 of 5 windows digital silence)"


def test_audio_of_a_truncated_file_decoding_only_part(tmp_path):
    full = encode_video(tmp_path / "ten.mp4", seconds=10, fps=5, faststart=True)
    cut = truncate_audio_at(full, tmp_path / "cut.mp4", 1.6)
    audio = sample_audio(str(cut), 16000, 0.96, 60)
    assert audio.status == "partial: 1.6 of 10.0 s"  # no decode error: the track just ends at the cut
    assert audio.windows.shape == (1, 15360) and audio.expected == pytest.approx(10.0)


def test_a_track_of_pure_digital_silence(tmp_path):
    path = encode_video(tmp_path / "mute.mp4", seconds=3, silent_after=0.0)
    assert _status(lambda p: sample_audio(p, 16000, 0.96, 60), path) == (
        "silent: the audio track is digital silence throughout (3.0 s)")


def test_a_one_pixel_video(tmp_path):
    path = encode_video(tmp_path / "dot.mkv", seconds=1, size=(1, 1), pix_fmt="yuv444p")
    assert _status(lambda p: sample_frames(p, 4, 224), path) == (
        "picture too small: 1x1 pixels (at least 16x16 are needed for frame features)")
    assert sample_audio(str(path), 16000, 0.96, 60).status == "ok"  # its sound is fine


def test_silent_samples_counts_runs_of_zeros_at_least_a_window_long():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=1000).astype(np.float32)
    samples[100:130] = 0  # 30 zeros: a run
    samples[500:505] = 0  # 5 zeros: too short
    samples[990:] = 0  # 10 at the end
    brute = 0
    run = 0
    for value in [*samples, 1.0]:  # brute force over the runs
        if value == 0:
            run += 1
        else:
            brute += run if run >= 10 else 0
            run = 0
    assert silent_samples(samples, 10) == brute == 40
    assert silent_samples(np.zeros(7, np.float32), 7) == 7 and silent_samples(np.ones(7, np.float32), 1) == 0


# ---------------------------------------------------------------------------------------------
# real media
# ---------------------------------------------------------------------------------------------
REAL = {  # file: (duration s from the data README, has audio)
    "clip-video-encode__vid1.mp4": (2.2, True),
    "clip-video-encode__vid2.mp4": (5.4, True),
    "moviepy__chaplin.mp4": (9.6, True),
    "moviepy__doc_medias__example2.mp4": (2.0, True),
    "moviepy__doc_medias__long_examples__example.mp4": (16.0, False),
    "moviepy__smpte-2997.mp4": (10.0, True),
    "video2dataset__test_video.mp4": (122.7, True),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_media_frames_cover_the_whole_video(shared_media, name):
    duration, has_audio = REAL[name]
    path = shared_media / "video" / name
    sample = sample_frames(str(path), 16, 224)
    assert sample.status == "ok" and sample.frames.shape[1:] == (224, 224, 3)
    assert sample.duration == pytest.approx(duration, abs=0.15)
    slice_len = sample.duration / 16
    assert np.all(np.diff(sample.times) > 0)
    assert np.all(np.abs(sample.times - sample.targets[np.argmin(np.abs(sample.targets[None] - sample.times[:, None]), axis=1)])
                  <= slice_len / 2 + 0.05)
    assert sample.times[0] < slice_len and sample.times[-1] > sample.duration - slice_len
    assert sample.frames.std() > 5  # real pictures, not black
    if has_audio:
        audio = sample_audio(str(path), 16000, 0.96, 60)
        expected = min(int(audio.duration / 0.96), 62)
        assert audio.windows.shape == (expected, 15360) and audio.status == "ok"
        assert audio.duration == pytest.approx(duration, abs=0.2)
    else:
        assert _status(lambda p: sample_audio(p, 16000, 0.96, 60), path) == "no audio track"


def test_real_long_video_audio_is_spread_and_capped(shared_media):
    audio = sample_audio(str(shared_media / "video" / "video2dataset__test_video.mp4"), 16000, 0.96, 60)
    assert audio.windows.shape == (62, 15360)  # 60 s cap / 0.96 s
    assert audio.starts[0] == 0 and audio.starts[-1] == pytest.approx(audio.duration - 0.96, abs=1e-3)


def test_real_audio_only_file(shared_media):
    audio = sample_audio(str(shared_media / "audio" / "moviepy__doc_medias__example.wav"), 16000, 0.96, 60)
    assert audio.windows.shape == (2, 15360) and audio.duration == pytest.approx(2.0, abs=0.05)
    with pytest.raises(MediaError, match="no video stream"):
        sample_frames(str(shared_media / "audio" / "moviepy__doc_medias__example.wav"), 4, 64)


def test_long_tracks_seek_per_window_and_match_a_full_decode(shared_media):
    """Feature-length tracks are sampled by seeking to each window; the windows must hold the same
    audio as cutting them out of a full decode (AAC restarts after a seek, so not bit for bit)."""
    path = str(shared_media / "video" / "video2dataset__test_video.mp4")
    seek = sample_audio(path, 16000, 0.96, 4.8, full_decode_seconds=0)  # force the seeking path
    full = sample_audio(path, 16000, 0.96, 1e9)  # every consecutive window of the track
    assert seek.windows.shape == (5, 15360) and seek.status == "ok"
    assert seek.starts[0] == 0 and seek.starts[-1] == pytest.approx(seek.duration - 0.96, abs=1e-3)
    signal = full.windows.reshape(-1)
    for start, window in zip(seek.starts, seek.windows):
        begin = int(round(start * 16000))
        reference = signal[begin:begin + 15360]
        if reference.size == 15360:  # (the last window may run past the consecutive ones)
            assert np.corrcoef(reference[2048:], window[2048:])[0, 1] > 0.97  # measured 0.984 to 1.0, no lag


def write_mp3_with_cover_art(path, seconds: float = 3.0):
    """An mp3 (a 440 Hz tone) with a 128x128 JPEG attached as its cover art, muxed by PyAV."""
    import av

    out = av.open(str(path), "w", format="mp3")
    audio = out.add_stream("libmp3lame", rate=44100, layout="stereo")
    cover = out.add_stream("mjpeg", rate=1)
    cover.width = cover.height = 128
    cover.pix_fmt = "yuvj420p"
    cover.disposition = av.stream.Disposition.attached_pic
    picture = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    for packet in [*cover.encode(av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuvj420p")),
                   *cover.encode(None)]:
        out.mux(packet)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(44100 * seconds)) / 44100)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
    frame.sample_rate = 44100
    for packet in [*audio.encode(frame), *audio.encode(None)]:
        out.mux(packet)
    out.close()
    return path


def test_an_mp3_with_cover_art_has_no_video_but_its_audio(tmp_path):
    import av

    path = write_mp3_with_cover_art(tmp_path / "song.mp3")
    with av.open(str(path)) as container:  # the fixture holds what it should: one attached picture
        assert [s.disposition & av.stream.Disposition.attached_pic for s in container.streams.video] == [
            av.stream.Disposition.attached_pic]
    assert _status(lambda p: sample_frames(p, 4, 64), path) == (
        "no video stream: the file holds only an attached picture (cover art), no video track")
    audio = sample_audio(str(path), 16000, 0.96, 60)
    assert audio.status == "ok" and audio.windows.shape == (3, 15360)
