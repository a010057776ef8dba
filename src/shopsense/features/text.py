"""Tokens from product text: Chinese runs segmented by jieba, English words
lower-cased with stop words dropped, so 手机 matches 华为手机 and "Phones" matches "phone"."""

from __future__ import annotations

import json
import logging
import re
from functools import cache

import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from shopsense.data.schema import category_words

CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]+")
WORD = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]+|[a-z0-9]+(?:['\-][a-z0-9]+)*")
CHINESE_STOP_WORDS = frozenset(
    ["的", "了", "和", "与", "及", "是", "在", "有", "为", "适合", "，", "。"]
)


@cache
def jieba_tokenizer():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _stem(word: str) -> str:
    """A light English plural stemmer: enough to match "shoes" with "shoe"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str | None) -> list[str]:
    """Lower-cased tokens; Chinese is segmented with jieba, stop words are dropped."""
    if not text:
        return []
    tokens: list[str] = []
    for match in WORD.finditer(str(text).lower()):
        piece = match.group()
        if CJK.match(piece):
            tokens.extend(w for w in jieba_tokenizer().lcut(piece) if w not in CHINESE_STOP_WORDS)
        elif piece not in ENGLISH_STOP_WORDS:
            tokens.append(_stem(piece))
    return tokens


def item_texts(items: pd.DataFrame) -> list[str]:
    """One text per item: title, brand, category path, description and attribute values."""
    parts = []
    for col in ("title", "brand", "category", "description"):
        if col in items.columns:
            texts = items[col].fillna("").astype(str)
            parts.append(texts.map(category_words) if col == "category" else texts)
    if "attributes" in items.columns:
        parts.append(items["attributes"].fillna("{}").map(_attribute_text))
    if not parts:
        return [""] * len(items)
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + " " + part
    return joined.str.strip().tolist()


def _attribute_text(value: str) -> str:
    try:
        attrs = json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return ""
    if not isinstance(attrs, dict):
        return ""
    return " ".join(str(v) for k, v in attrs.items() if k != "language" and v is not None)
