"""Text analysis shared by the index and its queries.

Queries are analysed by the same chain as tantivy's ``en_stem`` tokenizer
(split on non-alphanumerics, drop tokens over 40 bytes, lower-case, English
Snowball stemmer), so a query word meets exactly the term the index holds.
Chinese runs are first segmented by jieba (tantivy would keep a run as one
token): for the index with ``cut_for_search``, which also emits the words inside
a compound, so the query 手机 finds 华为手机.
"""

from __future__ import annotations

from functools import cache, lru_cache

from shopsense.features.text import CJK, jieba_tokenizer

INDEX_TOKENIZER = "en_stem"
MAX_QUERY_CHARS = 512


def segment(text: str, for_index: bool = False) -> str:
    """The text with spaces between the words of its Chinese runs."""
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


def terms(text: str) -> list[str]:
    """Index terms of ``text``: what ``en_stem`` makes of the segmented text."""
    return _analyzer(True).analyze(segment(text))


def words(text: str, for_index: bool = False) -> list[str]:
    """Lower-cased words before stemming: the vocabulary typos are corrected against."""
    return _analyzer(False).analyze(segment(text, for_index))


@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The index term of one word; cached, as highlighting stems every shown title's words."""
    out = _analyzer(True).analyze(word)
    return out[0] if out else word
