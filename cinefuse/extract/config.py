"""What an extraction run does, as data: :class:`ExtractConfig` and its TOML loader.

Every CLI option is also a config key (same name, dashes become underscores). The TOML file may
hold the keys at top level or under an ``[extract]`` table; unknown keys and wrong types are
rejected on load with a message naming the key.

Only the fields that change feature values enter the store's config hash
(:meth:`ExtractConfig.feature_config`): backbones, frame and audio sampling, text fields.
Runtime knobs (workers, device, batch size, sharding, Ray) do not, so resuming with more workers
or on another machine still skips what is committed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cinefuse.choices import FRAME_SAMPLINGS
from cinefuse.errors import CinefuseError
from cinefuse.tomlconfig import check_value, known_fields, read_toml

DEFAULT_LANGUAGES = ["en", "fr", "es", "de", "it", "ja", "ko", "zh", "hi", "ru", "pt", "sv"]


@dataclass
class ExtractConfig:
    # -- inputs ---------------------------------------------------------------------------------
    manifest: str | None = None  # CSV, JSONL or Parquet with id, video, title, plot, year, ...
    videos: str | None = None  # or: scan this folder for video files (id = path without suffix)
    store: str | None = None  # local folder or s3://bucket/prefix
    endpoint_url: str | None = None  # S3-compatible endpoint for s3:// inputs and stores
    staging: str | None = None  # local folder an s3:// store is built in before the push
    text_fields: list[str] = field(default_factory=lambda: ["title", "plot"])
    tfidf_field: str = "plot"  # the text the TF-IDF set is fitted on (falls back to text_fields)
    year_field: str = "year"
    language_field: str = "language"

    # -- backbones (names from `cinefuse extract --list-backbones`) ------------------------------
    visual: list[str] = field(default_factory=lambda: ["effnet-lite0", "lowlevel"])
    audio: list[str] = field(default_factory=lambda: ["logmel"])
    text: list[str] = field(default_factory=lambda: ["minilm", "tfidf"])
    meta: list[str] = field(default_factory=lambda: ["year", "language"])
    openclip_model_configs: list[str] = field(default_factory=list)  # extra open_clip JSON configs

    # -- frame sampling -------------------------------------------------------------------------
    frames: int = 16
    image_size: int = 224  # short side resized to this, centre crop; backbones may ask for more
    frame_sampling: str = "keyframe"  # "keyframe": nearest keyframe when close enough, "exact"
    decode_threads: int = 1  # FFmpeg threads per decoding process (workers parallelise items)

    # -- audio ----------------------------------------------------------------------------------
    audio_sample_rate: int = 16000
    audio_window_seconds: float = 0.96  # VGGish-style windows
    audio_max_seconds: float = 60.0  # cap on audio used per item, windows spread over the track
    n_mels: int = 64
    logmel_steps_per_window: int = 4  # time resolution of audio/logmel_seq (0.24 s steps)

    # -- text and metadata ----------------------------------------------------------------------
    tfidf_dim: int = 256
    tfidf_max_features: int = 20000
    text_max_tokens: int = 256
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))

    # -- runtime (not part of the config hash) --------------------------------------------------
    device: str = "auto"  # "auto": cuda when torch sees a GPU, else cpu
    workers: int = 1  # DataLoader decoding processes; 0 decodes in the main process
    batch_size: int = 8  # items per model forward (frames of all of them in one batch)
    text_batch_size: int = 64
    torch_threads: int = 0  # 0: torch's default
    shard_size: int = 1024  # items per shard, the unit of commit and resume (~85 MB of default features)
    overwrite: bool = False
    refit: bool = False  # fit the TF-IDF on this manifest again and re-extract every item (replaces the store)
    strict: bool = False
    num_shards: int = 1
    shard_index: int = 0
    ray: str | None = None  # "local" for a local instance, or a cluster address
    ray_tasks: int = 0  # 0: one per CPU the Ray instance has
    ray_num_cpus: int = 0  # local instance only; 0: Ray's default
    progress: bool = True

    # ---------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise CinefuseError(f"extract config: {message}")

        need(self.frames >= 1, f"frames must be >= 1, got {self.frames}")
        need(self.image_size >= 32, f"image_size must be >= 32, got {self.image_size}")
        need(self.frame_sampling in FRAME_SAMPLINGS,
             f"frame_sampling must be {' or '.join(map(repr, FRAME_SAMPLINGS))}, got {self.frame_sampling!r}")
        need(self.decode_threads >= 0, "decode_threads must be >= 0")
        need(self.audio_sample_rate >= 4000, f"audio_sample_rate must be >= 4000, got {self.audio_sample_rate}")
        need(0.1 <= self.audio_window_seconds <= 30, "audio_window_seconds must be in [0.1, 30]")
        need(self.audio_max_seconds >= self.audio_window_seconds,
             "audio_max_seconds must be at least one audio window")
        need(8 <= self.n_mels <= 256, "n_mels must be in [8, 256]")
        need(self.logmel_steps_per_window >= 1, "logmel_steps_per_window must be >= 1")
        need(self.tfidf_dim >= 1, "tfidf_dim must be >= 1")
        need(self.workers >= 0, "workers must be >= 0")
        need(self.batch_size >= 1, "batch_size must be >= 1")
        need(self.text_batch_size >= 1, "text_batch_size must be >= 1")
        need(self.shard_size >= 1, "shard_size must be >= 1")
        need(self.num_shards >= 1, f"num_shards must be >= 1, got {self.num_shards}")
        need(0 <= self.shard_index < self.num_shards,
             f"shard_index must be in [0, {self.num_shards - 1}], got {self.shard_index}")
        need(self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda"),
             f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        for group in ("visual", "audio", "text", "meta", "text_fields", "languages", "openclip_model_configs"):
            value = getattr(self, group)
            need(isinstance(value, list) and all(isinstance(v, str) for v in value),
                 f"{group} must be a list of strings, got {value!r}")
        need(bool(self.text_fields), "text_fields must name at least one manifest column")

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | os.PathLike | None = None, **overrides: Any) -> "ExtractConfig":
        """Load ``path`` (keys at top level or under ``[extract]``), then apply ``overrides``
        (``None`` values are ignored, so argparse defaults do not mask the file)."""
        values: dict[str, Any] = {}
        if path is not None:
            raw = read_toml(path, "extract")
            values = dict(raw.get("extract", raw))
            values.pop("extract", None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, where=str(path) if path else "overrides")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> "ExtractConfig":
        known = known_fields(cls)
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise CinefuseError(
                f"{where}: unknown extract config key(s) {unknown}; valid keys: {sorted(known)}"
            )
        checked: dict[str, Any] = {}
        for key, value in values.items():
            checked[key] = check_value(known[key], value, "extract", key, f"{where}: ")
        return cls(**checked)

    def replace(self, **changes: Any) -> "ExtractConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def max_audio_windows(self) -> int:
        return max(1, int(self.audio_max_seconds / self.audio_window_seconds + 1e-9))

    @property
    def audio_window_samples(self) -> int:
        return int(round(self.audio_window_seconds * self.audio_sample_rate))

    def feature_config(self) -> dict[str, Any]:
        """The part of the config that decides feature values (hashed by the store)."""
        return {
            "extract_format": 1,
            "backbones": {"visual": list(self.visual), "audio": list(self.audio),
                          "text": list(self.text), "meta": list(self.meta)},
            "openclip_model_configs": [Path(p).name for p in self.openclip_model_configs],
            "frames": self.frames,
            "image_size": self.image_size,
            "frame_sampling": self.frame_sampling,
            "audio": {"sample_rate": self.audio_sample_rate, "window_seconds": self.audio_window_seconds,
                      "max_seconds": self.audio_max_seconds, "n_mels": self.n_mels,
                      "logmel_steps_per_window": self.logmel_steps_per_window},
            "text": {"fields": list(self.text_fields), "tfidf_field": self.tfidf_field,
                     "tfidf_dim": self.tfidf_dim, "tfidf_max_features": self.tfidf_max_features,
                     "max_tokens": self.text_max_tokens},
            "meta": {"year_field": self.year_field, "language_field": self.language_field,
                     "languages": list(self.languages)},
        }
