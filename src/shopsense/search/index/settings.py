"""The ranking and tolerance knobs of an index, saved with it as
``settings.json``, and the synonym groups a store gives."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from shopsense.errors import ShopsenseError
from shopsense.search.analysis import ANALYSIS_VERSION
from shopsense.search.query.fusion import FUSION_METHODS
from shopsense.search.query.understand import UnderstandingSettings


@dataclass
class SearchSettings:
    """Ranking and tolerance knobs, saved with the index (``settings.json``).

    The result set (``query.matching``): an item matches a query of n words
    when it has at least ``required_words(n)`` of them (all of them up to
    ``matching_all_up_to`` words, ``matching_share`` of them, rounded up,
    beyond; one word fewer, down to ``relaxed_share`` of them, rounded up,
    and to one word at least, while fewer than ``matching_min_hits`` items have that many), or when
    its vector's cosine to the query's is at least
    ``semantic_min_score_with_words`` where some item has the words, and
    ``semantic_min_score`` where none has (for a query with Chinese, only
    where the encoder reads Chinese: ``semantic_reads_chinese``). The last
    word of a query, unless the query ends with a space, also matches its
    ``prefix_expansions`` most frequent completions, which score
    ``prefix_weight``. The defaults are chosen on Home Depot's dev judgments
    and the synthetic store's nonsense and leaf-category queries (the
    README's result-set rule); an index keeps its own.

    ``understanding`` says how a query's price, brand, category and
    attribute readings apply (``query.understand``): by default a price
    filters and the others boost.
    """

    title_boost: float = 2.0
    fusion: str = "convex"
    semantic_weight: float = 0.3
    rrf_k: float = 60.0
    semantic_min_score: float = 0.5
    semantic_min_score_with_words: float = 0.4
    semantic_reads_chinese: bool = False  # the shipped MiniLM reads English only
    matching_all_up_to: int = 3
    matching_share: float = 0.75
    matching_min_hits: int = 10
    relaxed_share: float = 0.0  # relaxing goes down to one word
    prefix_weight: float = 0.5
    prefix_expansions: int = 30
    max_hits: int = 1000
    semantic_k: int = 100
    rerank_depth: int = 200
    typo_weight: float = 0.6
    synonym_weight: float = 0.8
    one_typo: int = 4
    two_typos: int = 8
    personalization: float = 0.3
    hnsw_above: int = 20_000
    int8_queries: bool = True
    model_path: str | None = None
    embedding_cache: str | None = None
    synonyms: list[list[str]] = field(default_factory=list)
    understanding: UnderstandingSettings = field(default_factory=UnderstandingSettings)

    def __post_init__(self) -> None:
        self.understanding = _understanding(self.understanding)

    def check(self) -> None:
        """Refuse a bad value; ``understanding`` set as a JSON object (``index
        --setting understanding={"brand": "filter"}``) is read here, over the
        defaults."""
        self.understanding = _understanding(self.understanding)
        self.understanding.check()
        if self.fusion not in FUSION_METHODS:
            raise ShopsenseError(f"fusion must be one of {', '.join(FUSION_METHODS)}")
        if not 0.0 <= self.semantic_weight <= 1.0:
            raise ShopsenseError("semantic_weight must be between 0 and 1")
        if self.max_hits < 1 or self.semantic_k < 0:
            raise ShopsenseError("max_hits must be positive and semantic_k not negative")
        if self.matching_all_up_to < 1 or not 0.0 < self.matching_share <= 1.0:
            raise ShopsenseError(
                "matching_all_up_to must be at least 1 and matching_share in (0, 1]"
            )
        if not 0.0 <= self.relaxed_share <= 1.0:
            raise ShopsenseError("relaxed_share must be between 0 and 1")
        if not -1.0 <= self.semantic_min_score_with_words <= self.semantic_min_score <= 1.0:
            raise ShopsenseError(
                "semantic_min_score_with_words must not exceed semantic_min_score, "
                "and both are cosines (between -1 and 1)"
            )
        if self.prefix_expansions < 0 or self.matching_min_hits < 0:
            raise ShopsenseError("prefix_expansions and matching_min_hits must not be negative")

    def save(self, folder: Path) -> None:
        """``settings.json``, with the text analysis version the index was built by."""
        data = asdict(self) | {"analysis": ANALYSIS_VERSION}
        (folder / "settings.json").write_text(json.dumps(data, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SearchSettings:
        data = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
        if data.pop("analysis", None) != ANALYSIS_VERSION:
            raise ShopsenseError(
                f"{folder} was indexed by a shopsense version that analysed text "
                "differently: build it again with `shopsense index`"
            )
        return cls(**data)

    def synonym_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for group in self.synonyms:
            for word in group:
                out.setdefault(word.lower(), []).extend(w for w in group if w != word)
        return out


def _understanding(value: UnderstandingSettings | dict) -> UnderstandingSettings:
    """``value`` as ``UnderstandingSettings`` (from settings.json or ``--setting``)."""
    if isinstance(value, UnderstandingSettings):
        return value
    if not isinstance(value, dict):
        raise ShopsenseError('understanding is an object such as {"price": "filter"}')
    try:
        return UnderstandingSettings(**value)
    except TypeError:
        known = ", ".join(f.name for f in fields(UnderstandingSettings))
        raise ShopsenseError(f"understanding takes {known}") from None


def load_synonyms(path: Path) -> list[list[str]]:
    """Synonym groups from JSON (a list of lists) or text (one comma-separated group a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ShopsenseError(f"cannot read synonyms {path}: {e.strerror}") from None
    if path.suffix == ".json":
        try:
            groups = json.loads(text)
        except json.JSONDecodeError as e:
            raise ShopsenseError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise ShopsenseError(f"{path} must hold a list of synonym lists")
    else:
        groups = [line.split(",") for line in text.splitlines() if line.strip()]
    groups = [[str(w).strip().lower() for w in g if str(w).strip()] for g in groups]
    return [g for g in groups if len(g) > 1]
