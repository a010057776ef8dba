"""Feature extractors, each usable on its own: text tokens (English and
Chinese), bag-of-words and TF-IDF, catalog-trained word embeddings, sentence
embeddings, and calendar context."""

from shopsense.features.calendar import calendar_features
from shopsense.features.sentence import SentenceEmbedder
from shopsense.features.text import item_texts, tokenize
from shopsense.features.vectorizers import BagOfWords, Tfidf
from shopsense.features.word2vec import WordEmbeddings

__all__ = [
    "BagOfWords",
    "SentenceEmbedder",
    "Tfidf",
    "WordEmbeddings",
    "calendar_features",
    "item_texts",
    "tokenize",
]
