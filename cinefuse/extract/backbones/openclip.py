"""open_clip models by name: ``openclip:MODEL/PRETRAINED`` (a tag from open_clip's list, fetched
from its hub), ``openclip:MODEL@/path/to/checkpoint`` (a local file), or
``openclip:MODEL/none`` (random initialisation: for tests of this loading code only, since hub
weights cannot be fetched on an air-gapped machine). In ``visual`` the image tower embeds every
sampled frame; in ``text`` the text tower embeds the item text. Extra model architectures
(JSON configs in open_clip's format) can be registered with ``openclip_model_configs``.
"""

from __future__ import annotations

import os
import re

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.extract.backbones.base import Backbone, SetSpec, sha256_of

PREFIX = "openclip:"


def parse_name(name: str) -> tuple[str, str | None, str | None]:
    """``openclip:ViT-B-32/laion2b_s34b_b79k`` -> (model, tag, path)."""
    spec = name[len(PREFIX):]
    if "@" in spec:
        model, path = spec.split("@", 1)
        if not os.path.isfile(path):
            raise CinefuseError(f"backbone {name}: checkpoint {path} not found; pass an existing file after '@'")
        return model, None, path
    model, _, tag = spec.partition("/")
    if not model:
        raise CinefuseError(f"backbone {name}: expected openclip:MODEL/PRETRAINED or openclip:MODEL@PATH")
    return model, (tag or None) if tag.lower() != "none" else None, None


def safe(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model)


_LOADED: dict[tuple, object] = {}


def load_openclip(name: str, device: str, configs: list[str]):
    """(model, tokenizer) shared by the image and text backbones of one name."""
    key = (name, device)
    if key in _LOADED:
        return _LOADED[key]
    import open_clip

    for config in configs:
        open_clip.add_model_config(config)
    model_name, tag, path = parse_name(name)
    if model_name not in open_clip.list_models():
        raise CinefuseError(f"backbone {name}: open_clip has no model {model_name!r}; "
                            "see open_clip.list_models() or register a JSON config with openclip_model_configs")
    try:
        model = open_clip.create_model(model_name, pretrained=path or tag, device=device)
    except RuntimeError as exc:
        raise CinefuseError(f"backbone {name}: cannot load weights ({exc}); hub weights need network access, "
                            "or pass a local checkpoint as openclip:MODEL@PATH") from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    _LOADED[key] = (model, tokenizer)
    return model, tokenizer


class _OpenClipBase(Backbone):
    def __init__(self, name: str, device: str, configs: list[str]):
        self.name = name
        self.device = device
        self.configs = list(configs)
        self.model_name, self.tag, self.path = parse_name(name)
        self.set_name = "openclip_" + safe(self.model_name)

    def load(self):
        return load_openclip(self.name, self.device, self.configs)

    @property
    def dim(self) -> int:
        model, _ = self.load()
        return int(model.text_projection.shape[1] if getattr(model, "text_projection", None) is not None
                   else model.visual.output_dim)

    def attrs(self) -> dict:
        weights = (f"local checkpoint {os.path.basename(self.path)}" if self.path
                   else f"open_clip pretrained tag {self.tag}" if self.tag else "random initialisation (testing only)")
        out = {"backbone": f"open_clip {self.model_name}", "weights": weights}
        if self.path:
            out["weights_sha256"] = sha256_of(self.path)
        return out


class OpenClipImage(_OpenClipBase):
    modality = "visual"
    kind = "model"

    def __init__(self, name: str, frames: int, device: str = "cpu", configs: list[str] = ()):
        super().__init__(name, device, configs)
        self.frames = frames

    @property
    def input_size(self) -> int:
        model, _ = self.load()
        size = model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def sets(self) -> list[SetSpec]:
        return [SetSpec(f"visual/{self.set_name}_frames", (self.frames, self.dim), "float16"),
                SetSpec(f"visual/{self.set_name}", (self.dim,))]

    def attrs(self) -> dict:
        model, _ = self.load()
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        return {**super().attrs(), "preprocessing": f"short side {self.input_size}, centre crop, mean {cfg.get('mean')}, std {cfg.get('std')}",
                "pooling": "image embedding per frame (unnormalised); pooled = mean over valid frames"}

    def embed(self, frames):
        import torch

        model, _ = self.load()
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=self.device).view(1, 3, 1, 1)
        x = frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.input_size:
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic",
                                                antialias=True, align_corners=False).clamp(0, 1)
        x = (x - mean) / std
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")):
            out = model.encode_image(x)
        return out.float()


class OpenClipText(_OpenClipBase):
    modality = "text"
    kind = "text"

    def __init__(self, name: str, device: str = "cpu", configs: list[str] = (), batch_size: int = 64):
        super().__init__(name, device, configs)
        self.batch_size = batch_size

    def sets(self) -> list[SetSpec]:
        return [SetSpec(f"text/{self.set_name}", (self.dim,))]

    def attrs(self) -> dict:
        return {**super().attrs(), "preprocessing": "open_clip tokenizer (truncated to the context length); unnormalised"}

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tokenizer = self.load()
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), self.batch_size):
            tokens = tokenizer(texts[start:start + self.batch_size]).to(self.device)
            with torch.inference_mode():
                out[start:start + len(tokens)] = model.encode_text(tokens).float().cpu().numpy()
        return out
