"""Typo tolerance: the catalog's own words, and the closest of them to a word
the catalog does not have.

Like Meilisearch's defaults, a word of ``one_typo`` (4) letters or more may
be one edit away, of ``two_typos`` (8) or more two; a swap of two neighbouring
letters is one edit. A typed word may have lost a letter, so it is held to
the budget of the longer of it and the word it is compared with: "don" (3
letters, no typo of its own) is one edit from "down" (4). Candidates are
compared only against words of a compatible length, in C (rapidfuzz), so a
correction costs about a millisecond on a 50k-word vocabulary.

A word being typed is a prefix: its completions are the catalogue's words
that start with it, the most frequent first; a partly typed word that starts
no catalogue word is matched, within the same edits, against the starts of
words as long as it (``diapr`` against ``diape`` of "diapers").
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from functools import cached_property
from pathlib import Path

import numpy as np

MAX_CORRECTIONS = 3


class Vocabulary:
    """Lower-cased words of the indexed text with their document frequencies."""

    def __init__(self, counts: dict[str, int], one_typo: int = 4, two_typos: int = 8) -> None:
        self.counts = counts
        self.one_typo = one_typo
        self.two_typos = two_typos

    @classmethod
    def build(cls, documents: list[list[str]], **kwargs: int) -> Vocabulary:
        counts: Counter[str] = Counter()
        for doc in documents:
            counts.update(set(doc))
        return cls(dict(counts), **kwargs)

    def update(self, documents: list[list[str]]) -> None:
        for doc in documents:
            for word in set(doc):
                self.counts[word] = self.counts.get(word, 0) + 1
        for derived in ("by_length", "sorted_words", "word_starts"):
            self.__dict__.pop(derived, None)

    @cached_property
    def by_length(self) -> dict[int, tuple[list[str], np.ndarray]]:
        groups: dict[int, list[str]] = {}
        for word in self.counts:
            groups.setdefault(len(word), []).append(word)
        return {
            n: (ws, np.array([self.counts[w] for w in ws], np.int64)) for n, ws in groups.items()
        }

    @cached_property
    def sorted_words(self) -> list[str]:
        """Every word in order, for the completions of a prefix."""
        return sorted(self.counts)

    @cached_property
    def word_starts(self) -> dict[int, list[str]]:
        """The distinct starts of each length, filled as lengths are asked for."""
        return {}

    def allowed_edits(self, word: str) -> int:
        if not word.isascii() or not word.isalpha():
            return 0  # numbers, model codes and Chinese words are matched exactly
        return self._edits_for(len(word))

    def _edits_for(self, length: int) -> int:
        """The edits a word of ``length`` letters may be away."""
        return 2 if length >= self.two_typos else 1 if length >= self.one_typo else 0

    def __contains__(self, word: str) -> bool:
        return word in self.counts

    def split(self, word: str, shortest: int = 3) -> tuple[str, str] | None:
        """Two catalogue words that ``word`` runs together ("wiremesh" -> "wire",
        "mesh"), each at least ``shortest`` letters; of several splits, the one
        whose rarer half is the most common."""
        if not word.isalpha():
            return None
        splits = [
            (min(self.counts.get(word[:i], 0), self.counts.get(word[i:], 0)), i)
            for i in range(shortest, len(word) - shortest + 1)
        ]
        count, at = max(splits, default=(0, 0))
        return (word[:at], word[at:]) if count else None

    def corrections(self, word: str) -> list[tuple[str, int]]:
        """Up to three catalog words within the allowed edits (of the longer of
        ``word`` and each), as (word, edits), nearest first, then most frequent."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        if not word.isascii() or not word.isalpha():
            return []
        found: list[tuple[int, int, str]] = []
        most = self._edits_for(len(word) + 2)  # the most edits any compared word allows
        for n in range(len(word) - most, len(word) + most + 1):
            edits = self._edits_for(max(n, len(word)))
            group = self.by_length.get(n)
            if group is None or edits == 0 or abs(n - len(word)) > edits:
                continue
            words, counts = group
            for match, distance, i in process.extract(
                word, words, scorer=OSA.distance, score_cutoff=edits, limit=None
            ):
                if distance > 0:
                    found.append((int(distance), -int(counts[i]), match))
        found.sort()
        return [(w, d) for d, _, w in found[:MAX_CORRECTIONS]]

    def completions(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` words that start with ``prefix`` (the prefix itself
        too, when it is a word), the most frequent first."""
        words = self.sorted_words
        lo = bisect.bisect_left(words, prefix)
        hi = bisect.bisect_left(words, prefix + "\U0010ffff")
        return sorted(words[lo:hi], key=lambda w: -self.counts[w])[:limit]

    def starts_a_word(self, prefix: str) -> bool:
        """Whether some word starts with ``prefix`` (or is it)."""
        words = self.sorted_words
        at = bisect.bisect_left(words, prefix)
        return at < len(words) and words[at].startswith(prefix)

    def prefix_corrections(self, partial: str, limit: int = 20) -> list[str]:
        """Starts of words, as long as ``partial``, within its allowed edits
        (not ``partial`` itself), nearest first."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        edits = self.allowed_edits(partial)
        if edits == 0:
            return []
        n = len(partial)
        if n not in self.word_starts:
            self.word_starts[n] = sorted({w[:n] for w in self.counts if len(w) >= n})
        matches = process.extract(
            partial, self.word_starts[n], scorer=OSA.distance, score_cutoff=edits, limit=limit
        )
        return [m for m, d, _ in matches if d > 0]

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {"one_typo": self.one_typo, "two_typos": self.two_typos, "counts": self.counts}
            ),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["counts"], data["one_typo"], data["two_typos"])
