"""Which title words go with which query words, learned from judgments.

A store's queries and titles often say the same thing in different words:
"sheetrock" finds "Drywall", "weed eater" finds "String Trimmer". Counting,
for each query word, the words of the titles judged relevant to the queries
that have it, against how common those words are in the catalogue, gives a
lift: how much likelier a title word is in a relevant title than in any.
The ranker reads the lifts of each candidate's words as features. The table is
plain JSON (words and numbers), so loading it runs no code.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shopsense.errors import ShopsenseError
from shopsense.search.evaluate import RELEVANT_GRADE, Judgments
from shopsense.search.titles import TitleTermIndex

SMOOTHING = 20.0  # pseudo-counts of the catalogue's word frequency a lift is shrunk with
N_LIFT_FEATURES = 4


class TitleWords:
    """A catalogue's title words per item, and the share of titles each word is
    in: what every table learnt over the catalogue (one per training fold) shares."""

    def __init__(self, title_terms: Mapping[str, str]) -> None:
        """``title_terms``: item id -> its title's terms joined by spaces."""
        self.of = {item: frozenset(joined.split()) for item, joined in title_terms.items()}
        frequency = Counter(itertools.chain.from_iterable(self.of.values()))
        self.share = {t: n / max(len(self.of), 1) for t, n in frequency.items()}


class TermAssociations:
    """``lift[q][t]``: log of how much likelier title word ``t`` is in a title
    judged relevant to a query with word ``q`` than in the catalogue; a pair
    never seen together gets ``unseen[q]``, which is lower the more often
    ``q`` was seen (and 0, no evidence, for a word never seen)."""

    def __init__(self, lift: dict[str, dict[str, float]], unseen: dict[str, float]) -> None:
        self.lift = lift
        self.unseen = unseen
        self._arrays: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    @classmethod
    def learn(
        cls,
        judgments: Judgments,
        query_terms: Mapping[str, list[str]],
        titles: TitleWords,
        smoothing: float = SMOOTHING,
    ) -> TermAssociations:
        """From ``judgments``, their query ids keyed to analysed ``query_terms``."""
        share = titles.share
        together: dict[str, Counter] = {}
        seen: Counter = Counter()
        for qid, grades in judgments.grades.items():
            words = set(query_terms.get(qid, ()))
            for item, grade in grades.items():
                if grade < RELEVANT_GRADE or item not in titles.of:
                    continue
                for q in words:
                    seen[q] += 1
                    together.setdefault(q, Counter()).update(titles.of[item])
        lift = {
            q: {
                t: float(np.log((c + smoothing * share[t]) / (seen[q] + smoothing) / share[t]))
                for t, c in counts.items()
            }
            for q, counts in together.items()
        }
        unseen = {q: float(np.log(smoothing / (n + smoothing))) for q, n in seen.items()}
        return cls(lift, unseen)

    def features(
        self,
        query_terms: list[str],
        title_ids: np.ndarray,
        owner: np.ndarray,
        n: int,
        index: TitleTermIndex,
    ) -> np.ndarray:
        """(n × 4) for ``n`` titles given as term ids and the title each id
        belongs to: over the query's words, the mean and the least of each
        title's best lift, the mean best lift of a word other than the query
        word itself, and the summed best other-word lift of query words the
        title lacks (the words it says differently)."""
        out = np.zeros((n, N_LIFT_FEATURES), np.float32)
        if not query_terms or not n:
            return out
        best = np.zeros((len(query_terms), n), np.float32)
        other = np.zeros_like(best)
        lacks = np.ones_like(best, dtype=bool)
        term_ids = index.ids_of(query_terms)
        for k, (term, term_id) in enumerate(zip(query_terms, term_ids, strict=True)):
            keys, values = self._arrays_of(term, index)
            lifts = np.full(len(title_ids), self.unseen.get(term, 0.0), np.float32)
            at = np.minimum(np.searchsorted(keys, title_ids), max(len(keys) - 1, 0))
            known = (keys[at] == title_ids) if len(keys) else np.zeros(len(title_ids), bool)
            lifts[known] = values[at[known]]
            same = title_ids == term_id
            best[k] = _max_per_title(lifts, owner, n)
            other[k] = _max_per_title(np.where(same, -np.inf, lifts), owner, n)
            lacks[k, owner[same]] = False
        out[:, 0] = best.mean(axis=0)
        out[:, 1] = best.min(axis=0)
        out[:, 2] = other.mean(axis=0)
        out[:, 3] = np.where(lacks, other, 0.0).sum(axis=0)
        return out

    def _arrays_of(self, term: str, index: TitleTermIndex) -> tuple[np.ndarray, np.ndarray]:
        """A query word's lifts as (sorted title term ids, lifts), kept until the
        catalogue's vocabulary grows (a new word may be one the table knows).
        Only the table's words are kept, so strangers' queries grow nothing."""
        row = self.lift.get(term)
        if row is None:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        size = len(index.vocabulary)
        cached = self._arrays.get(term)
        if cached is None or cached[0] != size:
            ids = index.ids_of(row)
            values = np.fromiter(row.values(), np.float32, len(row))
            kept = ids >= 0
            order = np.argsort(ids[kept])
            cached = self._arrays[term] = (size, ids[kept][order], values[kept][order])
        return cached[1], cached[2]

    # ------------------------------------------------------------- storage
    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"lift": self.lift, "unseen": self.unseen}))

    @classmethod
    def load(cls, path: Path) -> TermAssociations:
        try:
            stored = json.loads(path.read_text())
            return cls(stored["lift"], stored["unseen"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ShopsenseError(f"{path} is not a term association table: {e}") from None


def _max_per_title(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each title's largest value; 0 for a title without one (no terms, or all -inf)."""
    out = np.full(n, -np.inf, np.float32)
    np.maximum.at(out, owner, values)
    return np.where(np.isfinite(out), out, 0.0)
