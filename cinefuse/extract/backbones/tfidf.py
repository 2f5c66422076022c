"""TF-IDF over the plot text, reduced to a dense vector (scikit-learn).

TF-IDF depends on the corpus, so it is fitted once, on every item of the manifest of the run
that starts a store (not just this run's shard slice or the items still to do), and then frozen:
:meth:`TfIdf.state` (vocabulary, idf, SVD components) is kept in the store
(:mod:`cinefuse.extract.transforms`) and named in its config, and a later run that adds items
loads it (:meth:`TfIdf.load_state`) instead of fitting again, so the rows already in the store
and the new ones share one vector space and no committed row changes. Every row, the first
run's too, is computed from the state as loaded back, so all rows come from one code path.
Vectors are reduced with truncated SVD (LSA, fixed seed) to ``dim`` columns and L2-normalised; a
corpus too small for ``dim`` components is zero-padded to ``dim`` so every shard has the same
shape.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cinefuse.extract.backbones.base import Backbone, SetSpec


def corpus_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class TfIdf(Backbone):
    name = "tfidf"
    modality = "text"
    kind = "text"

    def __init__(self, dim: int = 256, max_features: int = 20000):
        self.dim = dim
        self.max_features = max_features
        self._vectorizer = None
        self._svd = None
        self.components = 0
        self.fingerprint = ""

    def sets(self) -> list[SetSpec]:
        return [SetSpec("text/tfidf", (self.dim,))]

    def attrs(self) -> dict:
        return {"backbone": "scikit-learn TfidfVectorizer + TruncatedSVD", "weights": f"fitted on corpus {self.fingerprint}",
                "preprocessing": (f"lowercase, English stop words, sublinear tf, at most {self.max_features} terms, "
                                  f"SVD to {self.components} components (zero-padded to {self.dim}), L2 norm")}

    def fit(self, corpus: list[str]) -> "TfIdf":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [t for t in corpus if t.strip()]
        self.fingerprint = corpus_fingerprint(docs)
        self._vectorizer = None
        if not docs:
            return self
        vectorizer = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True, stop_words="english",
                                     dtype=np.float32)
        try:
            matrix = vectorizer.fit_transform(docs)
        except ValueError:  # every word a stop word: fall back to keeping them
            vectorizer = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True, dtype=np.float32)
            try:
                matrix = vectorizer.fit_transform(docs)
            except ValueError:
                return self
        self._vectorizer = vectorizer
        self.components = min(self.dim, matrix.shape[0] - 1, matrix.shape[1] - 1)
        self._svd = None
        if self.components >= 1:
            self._svd = TruncatedSVD(n_components=self.components, random_state=0).fit(matrix)
        else:
            self.components = min(self.dim, matrix.shape[1])
        return self.load_state(self.state())  # every row from the kept state, this run's too

    def state(self) -> dict[str, np.ndarray]:
        """The fitted transform as plain arrays (no pickle): what :meth:`load_state` rebuilds."""
        vectorizer = self._vectorizer
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get) if vectorizer is not None else []
        return {
            "terms": np.array(terms, dtype=str),
            "idf": np.asarray(vectorizer.idf_ if vectorizer is not None else np.zeros(0), np.float32),
            "components": np.asarray(self._svd.components_ if self._svd is not None else np.zeros((0, 0)),
                                     np.float32),
            "params": np.array([self.dim, self.max_features, self.components,
                                int(vectorizer is not None and vectorizer.stop_words == "english")], np.int64),
            "fingerprint": np.array(self.fingerprint),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> "TfIdf":
        """Take a transform :meth:`state` returned (this run's or one kept in the store)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        dim, max_features, components, english = (int(v) for v in state["params"])
        if dim != self.dim:
            raise ValueError(f"the kept TF-IDF has {dim} dimensions, this run asks for {self.dim}")
        self.components = components
        self.fingerprint = str(state["fingerprint"])
        terms = [str(t) for t in state["terms"]]
        self._vectorizer = self._svd = None
        if terms:
            vectorizer = TfidfVectorizer(vocabulary={t: i for i, t in enumerate(terms)}, max_features=max_features,
                                         sublinear_tf=True, stop_words="english" if english else None,
                                         dtype=np.float32)
            vectorizer.idf_ = np.asarray(state["idf"], np.float32)
            self._vectorizer = vectorizer
        if state["components"].size:
            self._svd = _Projection(np.asarray(state["components"], np.float32))
        return self

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Dense (B, dim) float32 and a valid mask (False for empty text or no vocabulary hit)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        valid = np.zeros(len(texts), bool)
        if self._vectorizer is None:
            return out, valid
        matrix = self._vectorizer.transform(texts)
        dense = self._svd.transform(matrix) if self._svd is not None else matrix[:, :self.components].toarray()
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        hit = (matrix.getnnz(axis=1) > 0) & (norms[:, 0] > 0)
        out[:, :dense.shape[1]] = np.where(hit[:, None], dense / np.maximum(norms, 1e-12), 0)
        valid[:] = hit
        return out, valid


class _Projection:
    """The fitted SVD's one use here: ``transform`` is the product with the kept components
    (what ``TruncatedSVD.transform`` computes), so a loaded state needs no refit."""

    def __init__(self, components: np.ndarray):
        self.components_ = components

    def transform(self, matrix) -> np.ndarray:
        return np.asarray(matrix @ self.components_.T)
