"""Self-supervised speech/audio encoders from torchaudio's pipeline bundles (HuBERT, WavLM,
wav2vec 2.0): ``torchaudio:HUBERT_BASE`` fetches the bundle's weights from its hub,
``torchaudio:HUBERT_BASE@/path/model.pt`` loads a local state dict into the bundle's
architecture, and ``torchaudio:HUBERT_BASE@random`` initialises it randomly (for tests of this
loading code only: hub weights cannot be fetched on an air-gapped machine).

Each audio window is encoded on its own; the last transformer layer's outputs are averaged over
time, giving one vector per window (``audio/<bundle>_windows``) and their mean (``audio/<bundle>``).
"""

from __future__ import annotations

import os

from cinefuse.errors import CinefuseError
from cinefuse.extract.backbones.base import Backbone, SetSpec, sha256_of

PREFIX = "torchaudio:"


def parse_name(name: str) -> tuple[str, str | None]:
    spec = name[len(PREFIX):]
    bundle, _, source = spec.partition("@")
    return bundle.upper(), (source or None)


def get_bundle(bundle_name: str, name: str):
    from torchaudio import pipelines

    bundle = getattr(pipelines, bundle_name, None)
    if bundle is None or not hasattr(bundle, "_params"):
        known = sorted(n for n in dir(pipelines) if n.isupper() and hasattr(getattr(pipelines, n), "_params"))
        raise CinefuseError(f"backbone {name}: torchaudio has no wav2vec2-family bundle {bundle_name!r}; "
                            f"choose one of {', '.join(known)}")
    return bundle


class TorchaudioBundle(Backbone):
    modality = "audio"
    kind = "model"

    def __init__(self, name: str, max_windows: int, sample_rate: int, device: str = "cpu"):
        self.name = name
        self.bundle_name, self.source = parse_name(name)
        self.bundle = get_bundle(self.bundle_name, name)
        if self.source not in (None, "random") and not os.path.isfile(self.source):
            raise CinefuseError(f"backbone {name}: checkpoint {self.source} not found; pass an existing file after '@'")
        self.max_windows = max_windows
        self.sample_rate = sample_rate
        self.device = device
        self.dim = int(self.bundle._params["encoder_embed_dim"])
        self.set_name = self.bundle_name.lower()
        self._model = None

    def sets(self) -> list[SetSpec]:
        return [SetSpec(f"audio/{self.set_name}_windows", (self.max_windows, self.dim), "float16"),
                SetSpec(f"audio/{self.set_name}", (self.dim,))]

    def attrs(self) -> dict:
        out = {"backbone": f"torchaudio.pipelines.{self.bundle_name}",
               "weights": ("random initialisation (testing only)" if self.source == "random"
                           else f"local state dict {os.path.basename(self.source)}" if self.source
                           else f"torchaudio bundle {self.bundle_name}"),
               "preprocessing": f"windows resampled to {self.bundle.sample_rate} Hz; last layer averaged over time"}
        if self.source not in (None, "random"):
            out["weights_sha256"] = sha256_of(self.source)
        return out

    def load(self):
        import torch
        from torchaudio.models import wav2vec2_model

        if self._model is None:
            if self.source is None:
                try:
                    model = self.bundle.get_model()
                except Exception as exc:  # no network: name the way out
                    raise CinefuseError(f"backbone {self.name}: cannot fetch the bundle's weights ({type(exc).__name__}); "
                                        f"pass a local state dict as {PREFIX}{self.bundle_name}@PATH") from exc
            else:
                model = wav2vec2_model(**self.bundle._params)
                if self.source != "random":
                    state = torch.load(self.source, map_location="cpu", weights_only=True)
                    model.load_state_dict(state, strict=True)
            self._model = model.to(self.device).eval()
        return self._model

    def embed(self, windows):
        """(W, L) float tensor at ``sample_rate`` -> (W, dim) float32 tensor."""
        import torch
        import torchaudio

        model = self.load()
        x = windows.to(self.device).float()
        if self.sample_rate != self.bundle.sample_rate:
            x = torchaudio.functional.resample(x, self.sample_rate, self.bundle.sample_rate)
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda")):
            layers, _ = model.extract_features(x)
        return layers[-1].float().mean(dim=1)
