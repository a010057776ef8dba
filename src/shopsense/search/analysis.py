"""Text analysis shared by the index and its queries.

Queries are analysed by the same chain as tantivy's ``en_stem`` tokenizer
(split on non-alphanumerics, drop tokens over 40 bytes, lower-case, English
Snowball stemmer), so a query word meets exactly the term the index holds.
Chinese runs are first segmented by jieba (tantivy would keep a run as one
token): for the index with ``cut_for_search``, which also emits the words inside
a compound, so the query 手机 finds 华为手机.

Before either, measures are written one way (``normalize_units``): shoppers
type "24in", "24 inch" and "24\"" where titles say "24 in.", and "2x4" where
titles say "2 in. x 4 in.".
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from shopsense.features.text import CJK, jieba_tokenizer

INDEX_TOKENIZER = "en_stem"
MAX_QUERY_CHARS = 512
# Bumped whenever the text analysis changes what terms a text gives: an index
# built by another version would not meet its queries' terms.
ANALYSIS_VERSION = 3

# Unit words and their one spelling; each also stands for itself.
UNITS = {
    "in": "in",
    "inch": "in",
    "inches": "in",
    "ft": "ft",
    "feet": "ft",
    "foot": "ft",
    "gal": "gal",
    "gallon": "gal",
    "gallons": "gal",
    "lb": "lb",
    "lbs": "lb",
    "pound": "lb",
    "pounds": "lb",
    "oz": "oz",
    "pk": "pack",
    "pack": "pack",
    "v": "volt",
    "volt": "volt",
    "volts": "volt",
    "w": "watt",
    "watt": "watt",
    "watts": "watt",
    "amp": "amp",
    "amps": "amp",
    "mm": "mm",
    "cm": "cm",
    "x": "x",
}
_UNIT_NAMES = "|".join(sorted(UNITS, key=len, reverse=True))
# A number then a unit, written onto it ("24in", "18V", "4x8") or after spaces.
_MEASURE = re.compile(rf"(?<=\d)(\s*)({_UNIT_NAMES})(?![a-z])", re.IGNORECASE)
_TIMES = re.compile(r"(?<![a-z])x(?=\d)", re.IGNORECASE)  # "1 x4"
_INCH_MARK = re.compile(r'(?<=\d)\s*(?:"|\'\'|”)')
_DIGIT = re.compile(r"\d")


def normalize_units(text: str) -> str:
    """``text`` with each measure's unit split from its number and spelt one way:
    "24in", "24 inch" and '24"' all read "24 in"; "4x8" and "4 x8" read "4 x 8"."""
    if not _DIGIT.search(text):  # every pass below needs a digit
        return text
    if '"' in text or "'" in text or "”" in text:
        text = _INCH_MARK.sub(" in ", text)
    if "x" in text or "X" in text:
        text = _TIMES.sub("x ", text)
    return _MEASURE.sub(_unit, text)


def _unit(match: re.Match[str]) -> str:
    """A unit's one spelling; a lone letter after a space stays as it is (a
    "W" after a number is as often a width as watts)."""
    space, unit = match.groups()
    return " " + (unit if space and len(unit) == 1 else UNITS[unit.lower()]) + " "


_HYPHENATED = re.compile(r"\b([^\W\d_]+)-([^\W\d_]+)\b")


def segment(text: str, for_index: bool = False) -> str:
    """The text with its measures normalized (``normalize_units``) and spaces
    between the words of its Chinese runs. An indexed text also has each
    hyphenated word joined up ("Rust-Oleum" gives "rustoleum" too), as
    shoppers type it."""
    text = normalize_units(text)
    if for_index and "-" in text:
        text = _HYPHENATED.sub(r"\1-\2 \1\2", text)
    if not CJK.search(text):
        return text
    jieba = jieba_tokenizer()
    cut = jieba.cut_for_search if for_index else jieba.cut
    return CJK.sub(lambda m: " " + " ".join(cut(m.group())) + " ", text)


@cache
def _analyzer(stem: bool):
    import tantivy

    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
    )
    if stem:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def terms(text: str, for_index: bool = False) -> list[str]:
    """Index terms of ``text``: what ``en_stem`` makes of the segmented text."""
    return tokens(segment(text, for_index))


def words(text: str, for_index: bool = False) -> list[str]:
    """Lower-cased words before stemming: the vocabulary typos are corrected against."""
    return tokens(segment(text, for_index), stemmed=False)


def tokens(segmented: str, stemmed: bool = True) -> list[str]:
    """The terms (or, unstemmed, the words) of a text ``segment`` has already
    prepared, for an index build that segments each text once and reads it thrice."""
    return _analyzer(stemmed).analyze(segmented)


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The index term of one word; cached, as highlighting stems every shown title's words."""
    out = _analyzer(True).analyze(word)
    return out[0] if out else word
