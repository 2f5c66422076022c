"""Log-mel spectrogram features for audio, computed in the decoding workers.

Each window (0.96 s at 16 kHz by default, as VGGish) becomes a log-mel spectrogram with
VGGish's front end: 25 ms Hann windows, 10 ms hop, mel bands between 125 and 7500 Hz,
log(mel + 0.01). Two feature sets:
- ``audio/logmel_seq`` (T, n_mels): each window averaged down to ``steps`` time steps
  (0.24 s each by default), windows concatenated: a compact spectrogram sequence a small
  convolutional audio encoder can be trained on in fuse, as the thesis did;
- ``audio/logmel_stats`` (4 * n_mels,): per band, the mean, standard deviation, maximum and mean
  absolute frame-to-frame difference over every frame of every window.
"""

from __future__ import annotations

import numpy as np

from cinefuse.extract.backbones.base import Backbone, SetSpec

LOG_OFFSET = 0.01


class LogMel(Backbone):
    name = "logmel"
    modality = "audio"
    kind = "media"

    def __init__(self, sample_rate: int, n_mels: int, max_windows: int, steps: int):
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.max_windows = max_windows
        self.steps = steps
        self.n_fft = int(round(0.025 * sample_rate))
        self.hop = int(round(0.010 * sample_rate))
        self.f_max = min(7500.0, sample_rate / 2)
        self._transform = None  # built lazily inside each worker process

    def sets(self) -> list[SetSpec]:
        return [SetSpec("audio/logmel_seq", (self.max_windows * self.steps, self.n_mels), "float16"),
                SetSpec("audio/logmel_stats", (4 * self.n_mels,))]

    def attrs(self) -> dict:
        return {"backbone": "log-mel spectrogram (torchaudio)", "weights": "none",
                "preprocessing": (f"mono {self.sample_rate} Hz, STFT {self.n_fft} samples Hann, hop {self.hop}, "
                                  f"{self.n_mels} mel bands 125-{self.f_max:.0f} Hz, log(mel + {LOG_OFFSET})"),
                "sequence": f"each window averaged to {self.steps} steps, windows concatenated",
                "stats_columns": "per band: mean, std, max, mean |delta|"}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_transform"] = None
        return state

    def spectrogram(self, windows: np.ndarray) -> np.ndarray:
        """(W, L) float32 -> (W, n_mels, frames) log-mel."""
        import torch
        import torchaudio

        if self._transform is None:
            self._transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.n_fft, hop_length=self.hop,
                f_min=125.0, f_max=self.f_max, n_mels=self.n_mels, center=False, power=2.0)
        with torch.inference_mode():
            mel = self._transform(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        return torch.log(mel + LOG_OFFSET).numpy()

    def compute(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        logmel = self.spectrogram(windows)  # (W, M, F)
        pooled = torch.nn.functional.adaptive_avg_pool1d(torch.from_numpy(logmel), self.steps).numpy()
        seq = pooled.transpose(0, 2, 1).reshape(-1, self.n_mels)  # (W * steps, M)
        frames = logmel.transpose(1, 0, 2).reshape(self.n_mels, -1)  # (M, W * F)
        delta = np.abs(np.diff(logmel, axis=2)).mean(axis=(0, 2)) if logmel.shape[2] > 1 else np.zeros(self.n_mels)
        stats = np.concatenate([frames.mean(1), frames.std(1), frames.max(1), delta]).astype(np.float32)
        return {"audio/logmel_seq": seq.astype(np.float32), "audio/logmel_stats": stats}
