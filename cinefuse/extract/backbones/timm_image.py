"""Any timm image model as a visual backbone: ``timm:MODEL[/TAG][@PATH]``.

- ``timm:vit_small_patch14_dinov2/lvd142m``: the model with timm's pretrained tag (weights from
  the Hugging Face hub, the thesis's DINOv2 frame embeddings);
- ``timm:MODEL@/path/to/weights.pth`` (or ``MODEL/TAG@PATH``: the tag then only picks the
  preprocessing config): a local state dict (a ``state_dict`` or ``model`` entry is unwrapped;
  classifier weights are dropped, everything else must match the architecture exactly);
- ``timm:MODEL/none``: random initialisation, seeded, for tests of this loading code only (hub
  weights cannot be fetched on an air-gapped machine).

Every frame goes through the model's own eval preprocessing, timm's data config
(``resolve_model_data_config``: input size, ``crop_pct``, interpolation, mean, std), as
``timm.data.create_transform`` would apply it, written in tensor ops on the decoded frames:
resize the short side to ``floor(size / crop_pct)``, centre-crop ``size``, scale to [0, 1],
normalise. The decoder's centre square holds timm's centre crop, so frames decoded at the resize
size (the run decodes at the largest size its backbones ask for, at least ``image_size``) need
only the crop and the normalisation here, FFmpeg's area scaling standing in for timm's PIL
resampling; larger frames are first resized here with the model's interpolation. The feature is the model's pooled
pre-logits output (``num_classes=0``), per frame; the pooled set is the mean over frames.
"""

from __future__ import annotations

import math
import os
import re

from cinefuse.errors import CinefuseError
from cinefuse.extract.backbones.base import Backbone, SetSpec, sha256_of

PREFIX = "timm:"
RANDOM_SEED = 0  # random initialisation is seeded, so a test store is the same run after run
_LOADED: dict[tuple, object] = {}


def parse_name(name: str) -> tuple[str, str | None, str | None]:
    """``timm:vit_small_patch14_dinov2/lvd142m@w.pth`` -> (model, tag, path); tag "none" -> None."""
    spec, _, path = name[len(PREFIX):].partition("@")
    model, _, tag = spec.partition("/")
    if not model:
        raise CinefuseError(f"backbone {name}: expected timm:MODEL, timm:MODEL/TAG or timm:MODEL@PATH")
    if path and not os.path.isfile(path):
        raise CinefuseError(f"backbone {name}: checkpoint {path} not found; pass an existing file after '@'")
    return model, (tag or None) if tag.lower() != "none" else None, path or None


def safe(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model)


def load_timm(name: str, device: str):
    """The model of ``name`` in eval mode on ``device``, classifier removed (one per process)."""
    key = (name, device)
    if key in _LOADED:
        return _LOADED[key]
    import timm
    import torch

    model_name, tag, path = parse_name(name)
    if not timm.is_model(model_name):
        raise CinefuseError(f"backbone {name}: timm has no model {model_name!r}; see timm.list_models()")
    full = f"{model_name}.{tag}" if tag else model_name
    if tag and not _known_tag(full):
        raise CinefuseError(f"backbone {name}: timm has no pretrained tag {tag!r} for {model_name}; "
                            f"see timm.list_pretrained('{model_name}*')")
    if path or not tag:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = timm.create_model(full, pretrained=False, num_classes=0)
        if path:
            load_checkpoint(model, path, name)
    else:
        try:
            model = timm.create_model(full, pretrained=True, num_classes=0)
        except (OSError, RuntimeError, ValueError) as exc:
            raise CinefuseError(f"backbone {name}: cannot fetch the pretrained weights ({str(exc).splitlines()[0][:160]}); "
                                "hub weights need network access, or pass a local checkpoint as timm:MODEL@PATH") from exc
    model = model.to(device).eval()
    _LOADED[key] = model
    return model


def _known_tag(full: str) -> bool:
    import timm

    try:
        return timm.models.get_pretrained_cfg(full) is not None
    except RuntimeError:  # timm: "Invalid pretrained tag (...)"
        return False


def load_checkpoint(model, path: str, name: str) -> None:
    """Load a local state dict into ``model`` (built with ``num_classes=0``): its classifier
    tensors are dropped, any other missing or unexpected tensor is an error naming them."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict):
        raise CinefuseError(f"backbone {name}: {path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    classifier = model.pretrained_cfg.get("classifier") or "head"
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    state = {k: v for k, v in state.items() if not any(k == h or k.startswith(h + ".") for h in heads)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise CinefuseError(f"backbone {name}: checkpoint {os.path.basename(path)} does not fit timm's "
                            f"{model.pretrained_cfg.get('architecture')}: missing {missing[:4]}, unexpected "
                            f"{unexpected[:4]}, wrong shape {wrong[:4]}; pass weights of this architecture")
    model.load_state_dict(state, strict=True)


class TimmImage(Backbone):
    modality = "visual"
    kind = "model"

    def __init__(self, name: str, frames: int, device: str = "cpu"):
        self.name = name
        self.frames = frames
        self.device = device
        self.model_name, self.tag, self.path = parse_name(name)
        self.set_name = "timm_" + safe(self.model_name)
        self.max_frames_per_forward = 256 if device.startswith("cuda") else 32
        self._data_config: dict | None = None

    def load(self):
        return load_timm(self.name, self.device)

    @property
    def data_config(self) -> dict:
        """timm's eval data config of the model (input_size, crop_pct, interpolation, mean, std)."""
        if self._data_config is None:
            from timm.data import resolve_model_data_config

            self._data_config = resolve_model_data_config(self.load())
        return self._data_config

    @property
    def crop(self) -> tuple[int, int]:
        _, height, width = self.data_config["input_size"]
        return int(height), int(width)

    @property
    def input_size(self) -> int:
        """The short side frames are resized to before the centre crop (what the decoder gives)."""
        cfg = self.data_config
        return int(math.floor(max(self.crop) / cfg.get("crop_pct", 1.0)))

    @property
    def dim(self) -> int:
        model = self.load()
        return int(getattr(model, "head_hidden_size", None) or model.num_features)

    def sets(self) -> list[SetSpec]:
        return [SetSpec(f"visual/{self.set_name}_frames", (self.frames, self.dim), "float16"),
                SetSpec(f"visual/{self.set_name}", (self.dim,))]

    def attrs(self) -> dict:
        cfg = self.data_config
        weights = (f"local checkpoint {os.path.basename(self.path)}" if self.path
                   else f"timm pretrained tag {self.tag}" if self.tag else "random initialisation (testing only)")
        out = {"backbone": f"timm {self.model_name}", "weights": weights,
               "preprocessing": (f"short side {self.input_size} (decoder area scaling; {cfg['interpolation']} when "
                                 f"resized here), centre crop {self.crop[0]}x{self.crop[1]} (crop_pct "
                                 f"{cfg.get('crop_pct')}), mean {tuple(cfg['mean'])}, std {tuple(cfg['std'])}"),
               "pooling": "timm pre-logits feature per frame (num_classes=0); pooled = mean over valid frames"}
        if self.path:
            out["weights_sha256"] = sha256_of(self.path)
        return out

    def preprocess(self, frames):
        """(F, S, S, 3) uint8 tensor -> (F, 3, H, W) float32, timm's eval transform in tensor ops."""
        import torch

        cfg = self.data_config
        x = frames.to(self.device).permute(0, 3, 1, 2).float()
        scale = self.input_size
        if x.shape[-2:] != (scale, scale):
            mode = {"bicubic": "bicubic", "bilinear": "bilinear"}.get(cfg["interpolation"], "bilinear")
            x = torch.nn.functional.interpolate(x, size=(scale, scale), mode=mode, antialias=True,
                                                align_corners=False).clamp(0, 255)
        height, width = self.crop
        top, left = int(round((scale - height) / 2.0)), int(round((scale - width) / 2.0))  # as torchvision's CenterCrop
        x = x[:, :, top:top + height, left:left + width] / 255.0
        mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def embed(self, frames):
        """(F, S, S, 3) uint8 tensor -> (F, dim) float32 tensor (on the device)."""
        import torch

        model = self.load()
        x = self.preprocess(frames)
        step = self.max_frames_per_forward
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")):
            features = [model(x[i:i + step]) for i in range(0, len(x), step)]
        return torch.cat(features).float()
