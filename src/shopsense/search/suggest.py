"""Autocomplete from item titles and the query log.

Every phrase is findable from the start of any of its first words ("dri"
finds "Cordless Drill"; in Chinese, a word jieba finds inside a run: "手"
finds "便携手机"), ranked by popularity: a past query by how often it
was searched, a title by its item's popularity. When the prefix finds too
little, its last word is corrected against the phrases' words (one edit from
4 letters, two from 8), so "cordles dr" still completes.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from shopsense.features.text import CJK, jieba_tokenizer
from shopsense.search.typo import Vocabulary

KEY_CHARS = 48
MAX_TITLES = 200_000  # the most popular titles complete; the long tail is found by search
WORD_STARTS = 6
SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return SPACE.sub(" ", text.lower()).strip()


def word_starts(text: str) -> list[int]:
    """Where the first ``WORD_STARTS`` words of a normalized phrase start:
    after each space, and at each word jieba finds inside a Chinese run."""
    starts = {0, *(m.end() for m in re.finditer(" ", text))}
    for run in CJK.finditer(text):
        for _, start, _ in jieba_tokenizer().tokenize(run.group()):
            starts.add(run.start() + start)
    return sorted(starts)[:WORD_STARTS]


@dataclass
class Suggestion:
    text: str
    kind: str  # "query" or "item"
    item_id: str | None
    score: float


class Suggester:
    """Phrases (display text, kind, item id, weight) and a sorted key list over them."""

    def __init__(
        self, texts: list[str], kinds: list[str], item_ids: list[str | None], weights: np.ndarray
    ) -> None:
        self.texts, self.kinds, self.item_ids = texts, kinds, item_ids
        self.weights = np.asarray(weights, np.float64)

    @classmethod
    def build(
        cls,
        titles: list[str],
        item_ids: list[str],
        popularity: np.ndarray,
        queries: dict[str, int],
    ) -> Suggester:
        texts, kinds, ids, weights = [], [], [], []
        seen: set[str] = set()
        for query, count in sorted(queries.items(), key=lambda kv: -kv[1]):
            key = normalize(query)
            if key and key not in seen:
                seen.add(key)
                texts.append(query.strip())
                kinds.append("query")
                ids.append(None)
                weights.append(2.0 * np.log1p(count) + 1.0)
        keep = np.argsort(-np.asarray(popularity), kind="stable")[:MAX_TITLES]
        for i in np.sort(keep):
            title, item_id, pop = titles[i], item_ids[i], popularity[i]
            if normalize(title):
                texts.append(title.strip())
                kinds.append("item")
                ids.append(item_id)
                weights.append(float(np.log1p(max(pop, 0.0))) + 0.5)
        return cls(texts, kinds, ids, np.array(weights))

    @cached_property
    def _keys(self) -> tuple[list[str], np.ndarray]:
        pairs: list[tuple[str, int]] = []
        for i, text in enumerate(self.texts):
            norm = normalize(text)
            pairs.extend((norm[s : s + KEY_CHARS], i) for s in word_starts(norm))
        pairs.sort()
        return [k for k, _ in pairs], np.array([i for _, i in pairs], np.int64)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.build([normalize(t).split() for t in self.texts])

    def _matches(self, prefix: str) -> np.ndarray:
        keys, phrase = self._keys
        lo = bisect.bisect_left(keys, prefix)
        hi = bisect.bisect_left(keys, prefix + "\U0010ffff")
        return phrase[lo:hi]

    def suggest(self, prefix: str, k: int = 10) -> list[Suggestion]:
        prefix = normalize(prefix)[:KEY_CHARS]
        if not prefix or k <= 0:
            return []
        found = self._matches(prefix)
        if len(np.unique(found)) < k:
            head, _, last = prefix.rpartition(" ")
            for variant in self.vocabulary.prefix_corrections(last):
                found = np.concatenate([found, self._matches(f"{head} {variant}".strip())])
        found = np.unique(found)
        order = found[np.argsort(-self.weights[found], kind="stable")]
        out, shown = [], set()
        for i in order:
            key = normalize(self.texts[i])
            if key in shown:
                continue
            shown.add(key)
            out.append(
                Suggestion(self.texts[i], self.kinds[i], self.item_ids[i], float(self.weights[i]))
            )
            if len(out) == k:
                break
        return out

    def save(self, path: Path) -> None:
        data = {
            "texts": self.texts,
            "kinds": self.kinds,
            "item_ids": self.item_ids,
            "weights": self.weights.tolist(),
        }
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Suggester:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["texts"], data["kinds"], data["item_ids"], np.array(data["weights"]))
