"""One demo clip rendered from its three latent genres: the frames, the sound, the blurb, and the
MPEG-4 file (video plus AAC audio) they are encoded into.

Each genre shows in one modality only (see :mod:`cinefuse.demo.collection`); everything else is
nuisance drawn from the item's own generators (:func:`item_rng`), so rendering one item never
shifts another. ``config`` is a :class:`cinefuse.demo.collection.CollectionConfig` (not imported
here: the collection imports this module).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """An independent generator per (item, stream), so rendering one item never shifts another."""
    return np.random.default_rng([seed, index, stream])


# ----------------------------------------------------------------------------------------------
# pictures: the visual genre sets palette, texture and motion; a grey disk is nuisance

VISUAL_HUES = (0.03, 0.57, 0.31, 0.79)   # red-orange, cyan-blue, green, violet


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def render_frames(genre: int, rng: np.random.Generator, config: "CollectionConfig") -> np.ndarray:
    """(frames, size, size, 3) uint8 RGB for one item of visual genre ``genre``."""
    n, s = config.frames, config.size
    yy, xx = np.meshgrid(np.linspace(0.0, 1.0, s, dtype=np.float32),
                         np.linspace(0.0, 1.0, s, dtype=np.float32), indexing="ij")
    hue = (VISUAL_HUES[genre] + rng.uniform(-0.04, 0.04)) % 1.0
    colour = hsv_to_rgb(hue, rng.uniform(0.6, 0.9), rng.uniform(0.7, 0.95))
    shade = hsv_to_rgb((hue + 0.5) % 1.0, 0.3, rng.uniform(0.05, 0.2))   # dark complement
    times = np.arange(n, dtype=np.float32) / config.fps
    frames = np.empty((n, s, s, 3), dtype=np.float32)

    if genre == 0:      # Ember: a few soft blobs drifting slowly (smooth, little motion)
        centres = rng.uniform(0.2, 0.8, size=(3, 2))
        velocity = rng.normal(0.0, 0.04, size=(3, 2))
        widths = rng.uniform(0.15, 0.3, size=3)
        patterns = []
        for t in times:
            c = centres + velocity * t
            field = sum(np.exp(-((yy - c[k, 0]) ** 2 + (xx - c[k, 1]) ** 2) / (2 * widths[k] ** 2))
                        for k in range(3))
            patterns.append(np.clip(field, 0.0, 1.0))
    elif genre == 1:    # Frost: fine stripes scrolling fast (many edges, much motion)
        angle = rng.uniform(0.0, np.pi)
        freq = rng.uniform(9.0, 13.0)
        speed = rng.uniform(2.0, 3.0) * (1 if rng.random() < 0.5 else -1)
        axis = (xx.astype(np.float64) * np.cos(angle) + yy * np.sin(angle)) * freq
        # floor, not sign(sin(.)): a transcendental may differ in the last bit between SIMD code
        # paths, and at a stripe edge that flips a pixel; the clips must be identical bytes.
        patterns = [(np.floor(2.0 * (axis - speed * t)) % 2.0).astype(np.float32) for t in times]
    elif genre == 2:    # Moss: blocky cells flickering at random (texture, medium motion)
        cells = int(rng.integers(6, 10))
        grid = rng.random((cells, cells)) > 0.5
        patterns = []
        for _ in times:
            flip = rng.random((cells, cells)) < 0.25
            grid = np.where(flip, ~grid, grid)
            block = np.kron(grid.astype(np.float32), np.ones((s // cells + 1, s // cells + 1), np.float32))
            patterns.append(block[:s, :s])
    else:               # Dusk: concentric rings around a point, pulsing outwards
        cy, cx = rng.uniform(0.3, 0.7, size=2)
        ring = rng.uniform(5.0, 8.0)
        radius = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        patterns = [0.5 + 0.5 * np.cos(2 * np.pi * (ring * radius - 0.8 * t)) for t in times]

    for k, pattern in enumerate(patterns):
        frames[k] = shade + (colour - shade) * pattern[..., None]

    # Nuisance that carries no genre: a grey disk on a random path, and sensor noise.
    if rng.random() < 0.7:
        start, end = rng.uniform(0.15, 0.85, size=(2, 2))
        radius, grey = rng.uniform(0.08, 0.18), rng.uniform(0.2, 0.9)
        for k in range(n):
            c = start + (end - start) * (k / max(n - 1, 1))
            inside = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < radius ** 2
            frames[k][inside] = grey
    frames += 0.01 * rng.standard_normal(size=frames.shape, dtype=np.float32)
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# sound: the audio genre sets pitch, rhythm and noise colour; loudness and a floor are nuisance


def render_audio(genre: int, rng: np.random.Generator, config: "CollectionConfig") -> np.ndarray:
    """(samples,) float32 mono in [-1, 1] for one item of audio genre ``genre``."""
    sr, n = config.sample_rate, config.samples
    t = np.arange(n, dtype=np.float64) / sr
    if genre == 0:      # Bass: a low drone with harmonics and a slow swell
        f0 = rng.uniform(70.0, 140.0)
        wave = sum(a * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
                   for h, a in ((1, 1.0), (2, 0.5), (3, 0.25)))
        wave *= 0.75 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.3, 0.7) * t)
    elif genre == 1:    # Chime: high tone in fast decaying pulses
        f0 = rng.uniform(1500.0, 2600.0)
        rate = rng.uniform(3.0, 5.0)
        phase = (t * rate + rng.random()) % 1.0
        wave = np.sin(2 * np.pi * f0 * t) * np.exp(-phase / 0.08)
    elif genre == 2:    # Hiss: bright noise (white, tilted up by a first difference)
        white = rng.normal(0.0, 1.0, size=n + 1)
        wave = np.diff(white) + 0.5 * white[1:]
    else:               # Warble: a mid tone with deep vibrato
        f0 = rng.uniform(450.0, 800.0)
        depth, rate = rng.uniform(40.0, 80.0), rng.uniform(5.0, 7.0)
        wave = np.sin(2 * np.pi * f0 * t + (depth / rate) * np.sin(2 * np.pi * rate * t))
    wave = wave / (np.max(np.abs(wave)) + 1e-9)
    gain = rng.uniform(0.3, 0.8)
    floor = rng.normal(0.0, 0.005, size=n)
    return np.clip(gain * wave + floor, -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# words: the text genre sets the blurb's vocabulary; names and filler are nuisance

TEXT_VOCAB = {
    0: {  # Space
        "role": ["an astronaut", "a starship pilot", "a mission engineer", "an orbital station commander",
                 "a young astronomer"],
        "goal": ["must repair the failing reactor before the crew runs out of oxygen",
                 "answers a distress signal from a distant moon",
                 "leads the first landing on a frozen planet",
                 "tracks an alien transmission across the galaxy",
                 "steers the colony ship through an asteroid field"],
        "twist": ["Far from Earth, the spacecraft drifts beyond the edge of the solar system.",
                  "A rocket launch goes wrong and the capsule tumbles into orbit.",
                  "The signal from the nebula turns out to be a warning.",
                  "Zero gravity, cosmic radiation and a silent satellite test the crew."],
    },
    1: {  # Romance
        "role": ["a florist", "a shy violinist", "a wedding planner", "a widowed baker", "a poet"],
        "goal": ["falls in love with a stranger met on a rainy train platform",
                 "writes love letters to a childhood sweetheart",
                 "must choose between two suitors before the wedding day",
                 "rekindles a romance during one summer in Paris",
                 "learns to trust her heart again after a painful breakup"],
        "twist": ["A first kiss under the lanterns changes everything between the two lovers.",
                  "Their courtship survives jealousy, a broken engagement and a long goodbye.",
                  "A proposal at sunset leaves the couple torn between love and duty.",
                  "Heartbreak, tender dates and a bouquet of roses bring them together."],
    },
    2: {  # Crime
        "role": ["a homicide detective", "a retired safecracker", "an undercover cop", "a mob accountant",
                 "a public prosecutor"],
        "goal": ["hunts a serial killer through the city's back alleys",
                 "plans one last bank heist with an old gang",
                 "infiltrates a drug cartel to expose corrupt police",
                 "investigates a murder that the mafia wants buried",
                 "must testify against the gangster who framed him"],
        "twist": ["A stolen diamond, a dead informant and a crooked judge complicate the case.",
                  "The interrogation room hides more secrets than the crime scene.",
                  "Gunfire at the docks leaves the robbers with a bag of ransom money.",
                  "Fingerprints, a getaway car and a betrayal lead to the prison gates."],
    },
    3: {  # Sports
        "role": ["a washed-up boxer", "a high school coach", "a rookie quarterback", "a marathon runner",
                 "a team captain"],
        "goal": ["trains for the championship fight of a lifetime",
                 "turns a losing basketball team into title contenders",
                 "fights back from injury to play in the final match",
                 "chases an Olympic gold medal against all odds",
                 "leads the underdogs through the playoffs"],
        "twist": ["The stadium roars as the final whistle approaches with the score tied.",
                  "Every practice, sprint and training session builds toward the tournament.",
                  "A penalty kick in overtime decides the season.",
                  "The locker room speech before the big game rallies the athletes."],
    },
}
NAMES = ["Ada", "Bruno", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
         "Kira", "Lucas", "Mara", "Nils", "Olga", "Pavel", "Rosa", "Sami", "Tess", "Viktor"]
FILLER = ["The story unfolds over a single year.",
          "It is told in three chapters.",
          "The film was shot on location in a small town.",
          "Friends and family watch from the sidelines.",
          "Nothing turns out quite as planned.",
          "The ending leaves room for a second look."]
TITLE_WORDS = (["Long", "Quiet", "Second", "Open", "Last", "Paper", "Silver", "Northern", "Little",
                "Distant", "Golden", "Empty", "Early", "Hidden", "Broken"],
               ["Road", "Window", "Season", "Bridge", "River", "Letter", "Garden", "Morning", "House",
                "Harbour", "Mirror", "Corner", "Island", "Promise", "Door"])


def render_text(genre: int, rng: np.random.Generator) -> tuple[str, str, int]:
    """(title, plot, year) for one item of text genre ``genre``; the title carries no genre."""
    vocab = TEXT_VOCAB[genre]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    title = f"{pick(TITLE_WORDS[0])} {pick(TITLE_WORDS[1])}"
    plot = " ".join([f"{pick(NAMES)}, {pick(vocab['role'])}, {pick(vocab['goal'])}.",
                     pick(vocab["twist"]), pick(FILLER)])
    year = int(rng.integers(1960, 2021))
    return title, plot, year


# ----------------------------------------------------------------------------------------------
# encoding


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * 3 // 2, W) uint8 planar YUV 4:2:0, BT.601 limited range.

    Done here, exactly, so the bytes handed to the encoder depend on nothing but the pixels.
    """
    x = rgb.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16.0 + 0.256788 * r + 0.504129 * g + 0.097906 * b
    u = 128.0 - 0.148223 * r - 0.290993 * g + 0.439216 * b
    v = 128.0 + 0.439216 * r - 0.367788 * g - 0.071427 * b
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y.reshape(-1), sub(u).reshape(-1), sub(v).reshape(-1)]
    return np.clip(np.rint(np.concatenate(planes)), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def encode_clip(path: Path, frames: np.ndarray, audio: np.ndarray, config: "CollectionConfig") -> None:
    """Write an mp4 with MPEG-4 video and AAC audio; single-threaded so bytes are reproducible."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        # MPEG-4 Part 2 rather than H.264: libx264 gave different bytes for the same frames from
        # one call to the next in one process, and the collection must be the same for a seed.
        video = container.add_stream("mpeg4", rate=config.fps)
        video.width = video.height = config.size
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        video.bit_rate = 200_000
        sound = container.add_stream("aac", rate=config.sample_rate, layout="mono")
        sound.codec_context.thread_count = 1
        sound.bit_rate = 48000
        # The default two-loop AAC coder takes 4x longer on these clips for no audible gain here.
        sound.options = {"aac_coder": "fast"}
        for k in range(frames.shape[0]):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frames[k]), format="yuv420p")
            frame.pts = k
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = 1024   # the AAC frame size
        for start in range(0, audio.shape[0], chunk):
            piece = audio[start:start + chunk]
            frame = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
            frame.sample_rate = config.sample_rate
            frame.pts = start
            for packet in sound.encode(frame):
                container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)


def render_item(index: int, config: "CollectionConfig", genres: dict[str, np.ndarray], video_dir: Path):
    """Render and encode item ``index``; returns its (title, plot, year)."""
    frames = render_frames(int(genres["visual"][index]), item_rng(config.seed, index, 1), config)
    audio = render_audio(int(genres["audio"][index]), item_rng(config.seed, index, 2), config)
    movie_id = config.first_movie_id + index
    encode_clip(video_dir / f"{movie_id}.mp4", frames, audio, config)
    return render_text(int(genres["text"][index]), item_rng(config.seed, index, 3))
