"""What every backbone declares: its feature sets (name, per-row shape, dtype) and provenance.

Backbones come in three kinds, by where their work runs:
- ``media`` backbones (cheap numpy/torch maths on decoded frames or audio windows) run inside
  the DataLoader's decoding workers, so the main process only receives small arrays;
- ``model`` backbones (neural networks) run in the main process on large batches, on ``--device``;
- ``text`` and ``meta`` backbones run in the main process over each shard's item texts/fields.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class SetSpec:
    name: str  # "<modality>/<name>"
    shape: tuple[int, ...]  # per row: (D,) or (T, D)
    dtype: str = "float32"

    @property
    def sequence(self) -> bool:
        return len(self.shape) == 2


class Backbone:
    name: str = ""
    modality: str = ""  # visual | audio | text | meta
    kind: str = ""  # media | model | text | meta

    def sets(self) -> list[SetSpec]:
        raise NotImplementedError

    def attrs(self) -> dict[str, Any]:
        """Provenance recorded on each of this backbone's feature sets."""
        return {"backbone": self.name}


@lru_cache(maxsize=None)
def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import av
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                "av": av.__version__, "ffmpeg": ".".join(str(v) for v in av.library_versions.get("libavcodec", ()))}
    # Installed distributions' metadata, not imported modules: the record must not depend on what
    # the writing process happened to import, and importing these costs seconds.
    for name, dist in (("torchaudio", "torchaudio"), ("timm", "timm"), ("transformers", "transformers"),
                       ("open_clip", "open_clip_torch"), ("sklearn", "scikit-learn")):
        try:
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
