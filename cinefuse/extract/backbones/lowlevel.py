"""Low-level frame statistics: brightness, contrast, colourfulness, edge density, motion.

Cheap numpy maths on the decoded (centre-cropped) frames, computed in the decoding workers.
Per frame, with luma Y = 0.299 R + 0.587 G + 0.114 B scaled to [0, 1]:
- brightness: mean Y;  contrast: standard deviation of Y;
- colourfulness: Hasler and Suesstrunk (2003), sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 +
  mu_yb^2) with rg = R - G, yb = (R + G) / 2 - B, scaled by 1/255;
- edge density: fraction of interior pixels whose Sobel gradient magnitude on Y exceeds
  ``EDGE_THRESHOLD``;
- motion: mean |Y_t - Y_(t-1)| against the previous *sampled* frame (0 for the first): with
  frames seconds apart it measures how much the picture changes across the film, not optical flow.
The pooled set holds the mean and the standard deviation of each over the frames (motion over
frames 2..T only).
"""

from __future__ import annotations

import numpy as np

from cinefuse.extract.backbones.base import Backbone, SetSpec

EDGE_THRESHOLD = 0.25
STAT_NAMES = ("brightness", "contrast", "colourfulness", "edge_density", "motion")


def frame_statistics(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 5) float32."""
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    brightness = y.mean(axis=(1, 2))
    contrast = y.std(axis=(1, 2))
    rg = r - g
    yb = 0.5 * (r + g) - b
    colourfulness = (np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
                     + 0.3 * np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2)) / 255.0
    gx = (y[:, :-2, 2:] + 2 * y[:, 1:-1, 2:] + y[:, 2:, 2:]) - (y[:, :-2, :-2] + 2 * y[:, 1:-1, :-2] + y[:, 2:, :-2])
    gy = (y[:, 2:, :-2] + 2 * y[:, 2:, 1:-1] + y[:, 2:, 2:]) - (y[:, :-2, :-2] + 2 * y[:, :-2, 1:-1] + y[:, :-2, 2:])
    edges = (np.sqrt(gx * gx + gy * gy) > EDGE_THRESHOLD).mean(axis=(1, 2))
    motion = np.zeros(len(frames), np.float32)
    if len(frames) > 1:
        motion[1:] = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2))
    return np.stack([brightness, contrast, colourfulness, edges, motion], axis=1).astype(np.float32)


def pool_statistics(stats: np.ndarray) -> np.ndarray:
    """(T, 5) -> (10,): means then standard deviations (motion over frames 2..T)."""
    mean = stats.mean(axis=0)
    std = stats.std(axis=0)
    moving = stats[1:, 4] if len(stats) > 1 else stats[:, 4] * 0
    mean[4], std[4] = moving.mean() if moving.size else 0.0, moving.std() if moving.size else 0.0
    return np.concatenate([mean, std]).astype(np.float32)


class LowLevel(Backbone):
    name = "lowlevel"
    modality = "visual"
    kind = "media"

    def __init__(self, frames: int):
        self.frames = frames

    def sets(self) -> list[SetSpec]:
        return [SetSpec("visual/lowlevel_frames", (self.frames, 5)), SetSpec("visual/lowlevel", (10,))]

    def attrs(self) -> dict:
        return {"backbone": "lowlevel frame statistics", "weights": "none",
                "columns": list(STAT_NAMES), "pooled_columns": [f"{s}_mean" for s in STAT_NAMES] + [f"{s}_std" for s in STAT_NAMES],
                "edge_threshold": EDGE_THRESHOLD,
                "preprocessing": "luma BT.601 on the centre-cropped frames; motion against the previous sampled frame"}

    def compute(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        stats = frame_statistics(frames)
        return {"visual/lowlevel_frames": stats, "visual/lowlevel": pool_statistics(stats)}
