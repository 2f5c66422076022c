"""Metadata feature sets: release year and language, each a set of its own.

``meta/year`` (14,): (year - 1990) / 30, then a one-hot decade from the 1900s (earlier years
fall in it) to the 2020s (later years fall in it). The year comes from the ``year`` field, else
from a "(1995)" at the end of the title, as MovieLens writes it.
``meta/language`` (len(languages) + 1,): one-hot over the configured ISO 639-1 codes plus
"other"; common English names ("English", "French") are accepted.
"""

from __future__ import annotations

import re

import numpy as np

from cinefuse.extract.backbones.base import Backbone, SetSpec

FIRST_DECADE, LAST_DECADE = 1900, 2020
YEAR_DIM = 2 + (LAST_DECADE - FIRST_DECADE) // 10
TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
LANGUAGE_NAMES = {"english": "en", "french": "fr", "spanish": "es", "german": "de", "italian": "it",
                  "japanese": "ja", "korean": "ko", "chinese": "zh", "mandarin": "zh", "cantonese": "zh",
                  "hindi": "hi", "russian": "ru", "portuguese": "pt", "swedish": "sv"}


def parse_year(value: str, title: str = "") -> int | None:
    value = (value or "").strip()
    match = re.match(r"^(\d{4})", value)
    if match is None:
        match = TITLE_YEAR.search((title or "").strip())
    if match is None:
        return None
    year = int(match.group(1))
    return year if 1800 <= year <= 2100 else None


def year_features(year: int) -> np.ndarray:
    out = np.zeros(YEAR_DIM, np.float32)
    out[0] = (year - 1990) / 30.0
    decade = min(max((year // 10) * 10, FIRST_DECADE), LAST_DECADE)
    out[1 + (decade - FIRST_DECADE) // 10] = 1.0
    return out


class YearMeta(Backbone):
    name = "year"
    modality = "meta"
    kind = "meta"

    def __init__(self, field: str = "year"):
        self.field = field

    def sets(self) -> list[SetSpec]:
        return [SetSpec("meta/year", (YEAR_DIM,))]

    def attrs(self) -> dict:
        return {"backbone": "year features", "weights": "none",
                "columns": ["(year-1990)/30"] + [f"decade_{d}s" for d in range(FIRST_DECADE, LAST_DECADE + 10, 10)],
                "preprocessing": f"field {self.field!r}, else '(YYYY)' at the end of the title"}

    def encode(self, fields: dict[str, str]) -> tuple[np.ndarray | None, str]:
        year = parse_year(fields.get(self.field, ""), fields.get("title", ""))
        if year is None:
            return None, "no year"
        return year_features(year), "ok"


class LanguageMeta(Backbone):
    name = "language"
    modality = "meta"
    kind = "meta"

    def __init__(self, languages: list[str], field: str = "language"):
        self.languages = [code.lower() for code in languages]
        self.field = field

    def sets(self) -> list[SetSpec]:
        return [SetSpec("meta/language", (len(self.languages) + 1,))]

    def attrs(self) -> dict:
        return {"backbone": "language one-hot", "weights": "none", "columns": self.languages + ["other"],
                "preprocessing": f"field {self.field!r}, ISO 639-1 code or English name"}

    def encode(self, fields: dict[str, str]) -> tuple[np.ndarray | None, str]:
        value = (fields.get(self.field, "") or "").strip().lower()
        if not value:
            return None, "no language"
        code = LANGUAGE_NAMES.get(value, value.split("-")[0].split("_")[0])
        out = np.zeros(len(self.languages) + 1, np.float32)
        out[self.languages.index(code) if code in self.languages else len(self.languages)] = 1.0
        return out, "ok"
