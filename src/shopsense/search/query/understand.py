"""Query understanding: what a query asks besides its words (a price range,
a brand, a category, an attribute value), read into filters and boosts, with
the text left for matching.

Prices. A number is a price only beside a price word ("under", "over",
"less than", "between", 以下, 低于 …) or a currency ("$30", "20 dollars",
"50元"); words that also bound other things ("up to", "at least", "and up",
"+", 起) need the currency too. A bare range ("50-100") is a price when both
ends are round (multiples of 5, as price bands are written), the low end
first, and it stands alone: sizes, gauges and model numbers ("12-14",
"10-2 wire", "jr25-300") are not. A number followed by a unit is a measure
even after a price word ("under 30 inch", "24 in", "3/4 inch", "2x4",
"60 watt", "5 gal", "7岁以上"). A catalogue with no prices reads none.

Brands, categories, attributes. The catalogue's own names
(``QueryVocabulary``): its brands, each category level's own name
("Running Shoes", "手机壳"), and the values of attributes with at most
``max_attribute_values`` distinct values (enumerations such as colour and
size, not free text) that hold a letter and two or more characters (a size
"L" or an age "3-6" would read too many queries). They are matched on the
query's stemmed words, the longest phrase first; a phrase that names two
kinds is read as the first of brand, category, attribute.

Filter or boost. Each kind is applied as a filter, a boost or not at all, by
``UnderstandingSettings``. By default a price is a filter (a shopper who says
"under 50" does not want a 60 one) and the others boost: a brand or colour
named in a query is often also a word of the titles it wants, and a filter
would drop items whose brand field or attribute is missing or spelt
otherwise. A filter's words leave the text for matching (a price's always
do); a boost's stay, since a title that says them is still the better
match. The caller's own filter on a field replaces what was read for it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from shopsense.data.schema import category_leaf
from shopsense.errors import ShopsenseError
from shopsense.features.text import CJK
from shopsense.search.analysis import UNITS, stem, terms, words
from shopsense.search.catalog import Catalog, Filters

KINDS = ("price", "brand", "category", "attribute")
"""What a query can be read for, in the order a phrase naming two is read."""
MODES = ("filter", "boost", "off")


@dataclass
class UnderstandingSettings:
    """How each kind of reading is applied (one of ``MODES``), and how much a
    boost lifts: ``boost`` on the min-max scaled relevance, 1 being the gap
    between a query's best and worst match."""

    price: str = "filter"
    brand: str = "boost"
    category: str = "boost"
    attribute: str = "boost"
    boost: float = 0.3

    def check(self) -> None:
        for kind in KINDS:
            if self.mode(kind) not in MODES:
                raise ShopsenseError(f"understanding of {kind} must be one of {', '.join(MODES)}")
        if not 0.0 <= self.boost <= 10.0:
            raise ShopsenseError("understanding boost must be between 0 and 10")

    def mode(self, kind: str) -> str:
        return str(getattr(self, kind))


@dataclass(frozen=True)
class Reading:
    """One thing read from a query: a price range, or the values of a field
    (brand, category path, or an attribute's name), with the words it was
    read from and how it is applied."""

    kind: str
    field: str
    values: tuple[str, ...]
    price_min: float | None
    price_max: float | None
    words: str
    applied: str

    def as_filters(self) -> Filters:
        """What an item must have to meet this reading."""
        if self.kind == "price":
            return Filters(price_min=self.price_min, price_max=self.price_max)
        if self.kind == "attribute":
            return Filters(attributes={self.field: list(self.values)})
        return Filters(**{self.kind: list(self.values)})


@dataclass
class Understanding:
    """What a query was read for: its ``readings`` and the ``text`` left for
    matching (the query itself where nothing was read)."""

    query: str
    text: str
    readings: list[Reading] = field(default_factory=list)

    @property
    def consumed(self) -> list[str]:
        """The words taken out of the text for matching."""
        return [r.words for r in self.readings if r.applied == "filter"]

    def filters(self, caller: Filters | None = None) -> Filters:
        """The filter readings merged with the ``caller``'s own filters: a
        field the caller constrains keeps the caller's values."""
        caller = caller or Filters()
        own = Filters()
        for reading in self.readings:
            if reading.applied != "filter":
                continue
            read = reading.as_filters()
            own.category += read.category
            own.brand += read.brand
            own.price_min = read.price_min if read.price_min is not None else own.price_min
            own.price_max = read.price_max if read.price_max is not None else own.price_max
            for name, values in read.attributes.items():
                own.attributes[name] = own.attributes.get(name, []) + values
        caller_prices = caller.price_min is not None or caller.price_max is not None
        return Filters(
            category=caller.category or own.category,
            brand=caller.brand or own.brand,
            price_min=caller.price_min if caller_prices else own.price_min,
            price_max=caller.price_max if caller_prices else own.price_max,
            attributes=own.attributes | {k: v for k, v in caller.attributes.items() if v},
        )

    def boosts(self) -> list[Filters]:
        """Each boost reading as what an item must have to be lifted."""
        return [r.as_filters() for r in self.readings if r.applied == "boost"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QueryVocabulary:
    """The catalogue's brand, category and attribute names by their stemmed
    words: what a query's phrases are looked up in. Made when an index is
    opened and again after each catalogue change, from the live items."""

    def __init__(self, max_attribute_values: int = 200) -> None:
        self.max_attribute_values = max_attribute_values

    def fit(self, catalog: Catalog) -> QueryVocabulary:
        live = catalog.live_rows
        self.phrases_: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
        self.has_prices_ = bool(np.isfinite(catalog.price[live]).any())
        brand_codes, brand_names = catalog.brand_codes
        for code in np.unique(brand_codes[live]):
            if code >= 0:
                self._add(str(brand_names[code]), "brand", "brand", str(brand_names[code]))
        path_codes, prefixes, per_path, _ = catalog.paths
        for code in np.unique(path_codes[live]):
            for prefix in per_path[code] if code >= 0 else ():
                self._add(category_leaf(prefixes[prefix]), "category", "category", prefixes[prefix])
        for name, values in self._attribute_values(catalog.strings("attributes", live)).items():
            if len(values) <= self.max_attribute_values:
                for value in values:
                    if len(value) >= 2 and any(c.isalpha() for c in value):
                        self._add(value, "attribute", name, value)
        self.longest_ = max(map(len, self.phrases_), default=0)
        return self

    def _add(self, name: str, kind: str, field_name: str, value: str) -> None:
        """``name``'s phrase, and a hyphenated name's joined up ("Rust-Oleum" as
        "rustoleum"), as the index reads it."""
        for spelling in {name, name.replace("-", "")}:
            key = tuple(terms(spelling))
            if key and (kind, field_name, value) not in self.phrases_.get(key, []):
                self.phrases_.setdefault(key, []).append((kind, field_name, value))

    @staticmethod
    def _attribute_values(texts: np.ndarray) -> dict[str, set[str]]:
        """Each attribute's distinct values (text and numbers) over the items'
        JSON, each distinct JSON read once (items share most of theirs)."""
        out: dict[str, set[str]] = {}
        for text in pd.unique(texts):
            try:
                obj = json.loads(text) if text and text != "{}" else {}
            except json.JSONDecodeError:
                continue
            for name, value in obj.items() if isinstance(obj, dict) else ():
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    out.setdefault(str(name), set()).add(str(value))
        return out

    def lookup(
        self, stems: tuple[str, ...], kinds: Collection[str]
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """The first of ``kinds`` the phrase ``stems`` names, with the (field,
        value) pairs it names of that kind; None if it names none."""
        entries = self.phrases_.get(stems, [])
        for kind in KINDS:
            found = [(f, v) for k, f, v in entries if k == kind]
            if kind in kinds and found:
                return kind, found
        return None


# ------------------------------------------------------------------ prices
_DIGIT = re.compile(r"\d")
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SIGN = r"us\$|\$|¥|￥|€|£|rmb\s*|usd\s*"
_CURRENCY = r"\s*(?:(?:dollars?|bucks|usd|euros?|eur|rmb|yuan)(?![a-z])|美元|人民币|块钱|元|块)"


def _amount(i: int, alone: bool = True) -> str:
    """An amount: an optional currency sign, a number (``alone``: not inside a
    word, a fraction or a chain of numbers), an optional currency word, taken
    whenever it is there so that it is never read as a unit."""
    before = r"(?<![a-z0-9/.\-$¥￥€£])" if alone else ""
    return (
        rf"{before}(?P<sign{i}>{_SIGN})?\s*(?P<number{i}>{_NUMBER})"
        rf"(?:(?P<currency{i}>{_CURRENCY}))?+"
    )


_FILLER = r"(?:(?:for|priced|price|costing|costs?|that\s+costs?)\s+|价格|价位|价钱|售价)?"
_UPPER = r"under|below|less\s+than|cheaper\s+than|lower\s+than|低于|少于|小于|不超过|不高于|不到"
_LOWER = r"over|above|more\s+than|higher\s+than|高于|大于|超过|不低于|不少于"
_WEAK_UPPER = r"up\s+to|at\s+most|no\s+more\s+than|max(?:imum)?"
_WEAK_LOWER = r"at\s+least|min(?:imum)?|starting\s+at|from"
_UPPER_AFTER = r"以下|以内|之内"
_LOWER_AFTER = r"以上"
_WEAK_UPPER_AFTER = r"or\s+less|or\s+under|and\s+under|and\s+below|max"
_WEAK_LOWER_AFTER = r"and\s+up|and\s+above|or\s+more|plus|\+|起"
_RANGE_SEP = r"-|–|—|~|～|to|到|至"
# Units beside ``analysis.UNITS`` (what a price word then a number may measure);
# each is followed by no letter, so their order does not matter.
_UNIT_WORDS = "|".join(UNITS) + (
    "|m|km|ml|l|liters?|litre|kg|g|mg|gb|tb|mb|mah|hz|ghz|psi|btu|cfm|gpm|gph|rpm|hp|kw|kwh"
    "|ohm|db|sq|cu|yds?|yards?|qt|quarts?|pints?|pcs?|pieces?|count|ct|sheets?|ply|gauge|ga"
    "|awg|deg|degrees?|mil|lumens?|mp|years?|yr|months?|days?|hours?|hr|minutes?|people"
    "|person|seats?|servings?"
)
_CJK_UNITS = (
    "寸尺米升斤克两瓦伏码号件个只包片盒瓶袋罐箱人岁层度匹台套张支条双毫厘千公英天年月周时分秒倍"
)
# What follows a number that is a measure's: a unit, a fraction, a percentage.
_UNIT_AFTER = rf"[a-z/%\"'°×]|\.\d|\s+(?:{_UNIT_WORDS})(?![a-z])|\s*[{_CJK_UNITS}]"
_UNIT = re.compile(_UNIT_AFTER, re.IGNORECASE)
# ... or a code's: another number joined on ("10-2", "4x8", "1000-045").
_MEASURE_OR_CODE = re.compile(rf"[0-9]|\s*[-–~x×]\s*\d|{_UNIT_AFTER}", re.IGNORECASE)


@dataclass(frozen=True)
class _PricePattern:
    regex: re.Pattern[str]
    bound: str  # "max", "min" or "range"
    needs_currency: bool


def _range(words: str, separators: str, needs_currency: bool) -> _PricePattern:
    """A range: ``words`` (if any), an amount, one of ``separators``, an amount."""
    lead = rf"(?<![a-z])(?:{words})\s+" if words else ""
    regex = rf"{_FILLER}{lead}{_amount(1)}\s*(?:{separators})\s*{_amount(2, alone=False)}"
    return _PricePattern(re.compile(regex + r"(?:\s*之间)?", re.I), "range", needs_currency)


def _bound(bound: str, before: str, after: str, needs_currency: bool) -> _PricePattern:
    """A one-sided range: price words ``before`` an amount, or ``after`` it."""
    before = rf"(?<![a-z])(?:{before})\s*" if before else ""
    after = rf"\s*(?:{after})(?![a-z])" if after else ""
    return _PricePattern(
        re.compile(rf"{_FILLER}{before}{_amount(1)}{after}", re.I), bound, needs_currency
    )


# Ranges first, so "50 to 100 dollars" is not read as "to 100 dollars".
_PRICE_PATTERNS = (
    _range("between", "and|-|to", False),
    _range("from", "to|-", False),
    _range("", _RANGE_SEP, True),
    _bound("max", _UPPER, "", False),
    _bound("min", _LOWER, "", False),
    _bound("max", "", _UPPER_AFTER, False),
    _bound("min", "", _LOWER_AFTER, False),
    _bound("max", _WEAK_UPPER, "", True),
    _bound("min", _WEAK_LOWER, "", True),
    _bound("max", "", _WEAK_UPPER_AFTER, True),
    _bound("min", "", _WEAK_LOWER_AFTER, True),
)


def _price_match(
    text: str, pattern: _PricePattern, match: re.Match[str]
) -> tuple[float | None, float | None] | None:
    """The (min, max) a match of ``pattern`` reads, or None where it is no price."""
    groups = match.groupdict()
    last = "2" if groups.get("number2") else "1"
    priced = any(groups.get(f"{part}{i}") for part in ("sign", "currency") for i in "12")
    # A measure: "under 30 inch", "2 in to 4 in"; or a code: "10-2", "under 2x4".
    last_priced = groups.get(f"currency{last}") or groups.get(f"sign{last}")
    if not last_priced and _MEASURE_OR_CODE.match(text, match.end(f"number{last}")):
        return None
    first_priced = groups.get("currency1") or groups.get("sign1")
    if last == "2" and not first_priced and _UNIT.match(text, match.end("number1")):
        return None
    low = float(groups["number1"].replace(",", ""))
    if pattern.bound != "range":
        if pattern.needs_currency and not priced:
            return None
        return (low, None) if pattern.bound == "min" else (None, low)
    high = float(groups["number2"].replace(",", ""))
    if pattern.needs_currency and not priced:
        alone = (match.start() == 0 or text[match.start() - 1].isspace()) and (
            match.end() == len(text) or text[match.end()].isspace()
        )
        if not (alone and low < high and low % 5 == 0 and high % 5 == 0):
            return None
    return (min(low, high), max(low, high))


def _read_price(text: str) -> tuple[Reading | None, str]:
    """The price range ``text`` asks for (None if it asks none) and the text
    without the words that said it."""
    if not _DIGIT.search(text):  # every price has a number
        return None, text
    spans: list[tuple[int, int]] = []
    low: float | None = None
    high: float | None = None
    for pattern in _PRICE_PATTERNS:
        for match in pattern.regex.finditer(text):
            if any(a < match.end() and match.start() < b for a, b in spans):
                continue
            read = _price_match(text, pattern, match)
            if read is None:
                continue
            end = match.end() + (text[match.end() : match.end() + 1] == "的")
            spans.append((match.start(), end))
            if read[0] is not None:
                low = read[0] if low is None else max(low, read[0])
            if read[1] is not None:
                high = read[1] if high is None else min(high, read[1])
    if not spans or (low is not None and high is not None and low > high):
        return None, text
    spans.sort()
    said = " ".join(text[a:b].strip() for a, b in spans)
    kept, start = [], 0
    for a, b in spans:
        kept.append(text[start:a])
        start = b
    kept.append(text[start:])
    left = _left(" ".join("".join(kept).split()), text, spans[-1][1] >= len(text.rstrip()))
    return Reading("price", "price", (), low, high, said, ""), left


# ------------------------------------------------------------------ the stage
def understand(
    query: str,
    vocabulary: QueryVocabulary,
    settings: UnderstandingSettings | None = None,
    ignore: Collection[str] = (),
) -> Understanding:
    """What ``query`` asks for: its price range and the brands, categories
    and attribute values of ``vocabulary`` it names, each applied as
    ``settings`` say, except the kinds in ``ignore`` (of ``KINDS``), whose
    words stay text."""
    settings = settings or UnderstandingSettings()
    ignore = ignored_kinds(ignore)
    kinds = [k for k in KINDS if k not in ignore and settings.mode(k) != "off"]
    readings: list[Reading] = []
    text = query
    if "price" in kinds and vocabulary.has_prices_:
        price, rest = _read_price(query)
        if price is not None:
            readings.append(replace(price, applied=settings.mode("price")))
            text = rest if settings.mode("price") == "filter" else query
    named = [k for k in kinds if k != "price"]
    if named and vocabulary.longest_:
        named_readings, text = _read_names(text, vocabulary, named, settings)
        readings += named_readings
    return Understanding(query, text, readings)


def ignored_kinds(ignore: Collection[str]) -> tuple[str, ...]:
    """The kinds ``ignore`` names, in ``KINDS``' order; an unknown one is an error."""
    if isinstance(ignore, str):
        ignore = [ignore]
    unknown = set(ignore) - set(KINDS)
    if unknown:
        raise ShopsenseError(
            f"cannot ignore {', '.join(sorted(unknown))}: choose from {', '.join(KINDS)}"
        )
    return tuple(k for k in KINDS if k in ignore)


def _read_names(
    text: str, vocabulary: QueryVocabulary, kinds: list[str], settings: UnderstandingSettings
) -> tuple[list[Reading], str]:
    """The brand, category and attribute phrases of ``text``, longest first,
    and the text without the words of those applied as filters."""
    query_words = words(text)
    stems = [stem(w) for w in query_words]
    readings: list[Reading] = []
    kept: list[str] = []
    read_last = False
    i = 0
    while i < len(stems):
        found = None
        for length in range(min(vocabulary.longest_, len(stems) - i), 0, -1):
            found = vocabulary.lookup(tuple(stems[i : i + length]), kinds)
            if found is not None:
                break
        if found is None:
            kept.append(query_words[i])
            read_last = False
            i += 1
            continue
        kind, pairs = found
        said = _joined(query_words[i : i + length])
        applied = settings.mode(kind)
        for name in dict.fromkeys(f for f, _ in pairs):
            values = tuple(v for f, v in pairs if f == name)
            readings.append(Reading(kind, name, values, None, None, said, applied))
        read_last = applied == "filter"
        if not read_last:
            kept += query_words[i : i + length]
        i += length
    if all(r.applied != "filter" for r in readings):
        return readings, text
    return readings, _left(_joined(kept), text, read_last)


def _left(kept: str, query: str, read_last: bool) -> str:
    """The text left for matching, with a space at its end where the query
    had one or where its last words were read: its last word is then whole,
    not a prefix being typed."""
    return kept + " " if kept and (read_last or query[-1:].isspace()) else kept


def _joined(query_words: list[str]) -> str:
    """Words as one text: spaced, but Chinese words written together as typed."""
    out = query_words[:1]
    for before, word in itertools.pairwise(query_words):
        out.append(word if CJK.match(before[-1]) and CJK.match(word[0]) else " " + word)
    return "".join(out)


def boosted(
    rows: np.ndarray,
    score: np.ndarray,
    boosts: list[Filters],
    catalog: Catalog,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` re-ordered by their min-max scaled score plus ``weight`` times
    the share of ``boosts`` each meets; as they are without boosts."""
    if not boosts or weight <= 0 or not len(rows):
        return rows, score
    met = np.mean([catalog.mask(rows, b) for b in boosts], axis=0)
    span = score.max() - score.min()
    base = (score - score.min()) / span if span > 0 else np.ones(len(score))
    score = base + weight * met
    order = np.argsort(-score, kind="stable")
    return rows[order], score[order]
