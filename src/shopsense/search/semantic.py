"""Semantic retrieval: sentence embeddings of item text in faiss, and a query
encoder fast enough for a search box.

Row i of the vector index is catalog row i (rows are append-only; deleted
rows are masked out at query time). Below ``hnsw_above`` vectors the index is
exact inner product; above it, HNSW, whose query reads a few thousand vectors
where an exact scan reads them all (77 MB at 50k items). A filter that leaves
few rows is answered exactly over just those rows, which is both faster and
complete where a graph walk would have to skip most of what it meets.
Queries skip sentence-transformers' batching machinery (one short text needs
none of it) and are cached.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from shopsense.data.schema import category_leaf
from shopsense.errors import ShopsenseError
from shopsense.features.sentence import DIM, sentence_model
from shopsense.lru import LRUCache

QUERY_CACHE = 4096
HNSW_NEIGHBOURS = 32
HNSW_SEARCH_DEPTH = 128
EXACT_SUBSET = 20_000


def item_embedding_text(title: str, brand: str, category: str) -> str:
    """What an item's vector encodes: its title, brand and deepest category."""
    leaf = category_leaf(category)
    return " ".join(p for p in (title, brand if brand not in title else "", leaf) if p)


class VectorIndex:
    """faiss inner-product index over L2-normalized vectors, one per catalog row."""

    def __init__(self, index) -> None:
        self.index = index

    @classmethod
    def create(cls, n_expected: int, hnsw_above: int) -> VectorIndex:
        import faiss

        if n_expected > hnsw_above:
            index = faiss.IndexHNSWFlat(DIM, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
        else:
            index = faiss.IndexFlatIP(DIM)
        return cls(index)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the ``k`` nearest, among ``allowed`` rows.

        At most ``EXACT_SUBSET`` allowed rows are searched exactly, by faiss's
        flat scan with the rows as a bitmap: it reads only their vectors in
        place, where copying them out first (``matrix[rows]``) cost more than
        the products on a brand's few thousand items."""
        import faiss

        if self.size == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = query.reshape(1, -1).astype(np.float32)
        index, selector = self.index, None
        if allowed is not None:
            allowed = allowed[: self.size]
            bits = np.packbits(allowed.astype(np.uint8), bitorder="little")
            selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bits))
            if isinstance(index, faiss.IndexHNSW) and np.count_nonzero(allowed) <= EXACT_SUBSET:
                index = faiss.downcast_index(index.storage)
        if isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_SEARCH_DEPTH, k))
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, rows = index.search(query, k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    @property
    def matrix(self) -> np.ndarray:
        """Every stored vector, as a read-only view of faiss's own memory (no copy)."""
        import faiss

        flat = self.index
        if isinstance(flat, faiss.IndexHNSW):
            flat = faiss.downcast_index(flat.storage)
        size = self.size * DIM
        view = faiss.rev_swig_ptr(flat.get_xb(), size) if size else np.empty(0, np.float32)
        view = view.reshape(self.size, DIM)
        view.flags.writeable = False
        return view

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows.astype(np.int64)]

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        import faiss

        return cls(faiss.read_index(str(path)))


def query_threads() -> None:
    """One thread for torch and faiss: one short query is fastest that way, and a
    server runs one query per worker thread or process."""
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)


class QueryEncoder:
    """One query at a time through the sentence model, with an LRU cache.

    Encoding one short text is fastest on one thread: a server sets
    ``torch.set_num_threads(1)`` (the CLI and benchmarks do). With ``int8``
    the linear layers run dynamically quantized, per output channel: about
    1.8× faster, query vectors within cosine 0.98 of the float ones, and the
    same held-out NDCG@10 on Home Depot to 0.001 (items stay float).

    The model's own ``encode`` is built for batches: for one short query its
    tokenizer front end, its modules' dispatch and eager PyTorch's hundred-odd
    module calls cost more than the arithmetic. Here the tokenizer's Rust core
    is called directly, and the transformer, mean pooling and normalization run
    as one traced (TorchScript) graph: 2.2 ms a query becomes about 1.7 ms
    (int8, one thread; 4.7 ms in eager PyTorch), the same vectors to 1e-6."""

    def __init__(self, model_path: str | None = None, int8: bool = False) -> None:
        self.model = sentence_model("cpu", model_path)
        if int8:
            self.model = _quantized(self.model)
        self._tokenizer = _query_tokenizer(self.model)
        self._graph = _traced_sentence_vector(self.model, self._tensors("an example query"))
        self._cache: LRUCache[str, np.ndarray] = LRUCache(QUERY_CACHE)

    def encode(self, text: str) -> np.ndarray:
        return self._cache.get(text, self._encode)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _tensors(self, text: str) -> dict:
        import torch

        encoding = self._tokenizer.encode(text)
        return {
            "input_ids": torch.tensor([encoding.ids]),
            "attention_mask": torch.tensor([encoding.attention_mask]),
            "token_type_ids": torch.tensor([encoding.type_ids]),
        }

    def _encode(self, text: str) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._graph(**self._tensors(text))[0].numpy().astype(np.float32)


def _query_tokenizer(model):
    """A copy of the model's Rust tokenizer that truncates where the model does
    and never pads (one text needs no padding)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=model.max_seq_length)
    return tokenizer


def _traced_sentence_vector(model, example: dict) -> Callable:
    """The model's transformer, mean pooling and L2 normalization as one traced
    graph. Sequence length stays free: nothing in the graph depends on it."""
    import warnings

    import torch
    from transformers.utils import logging as transformers_logging

    modules = list(model)
    pooling = getattr(modules[1], "pooling_mode", None) if len(modules) > 1 else None
    if pooling != "mean":
        raise ShopsenseError(
            f"the query encoder needs a sentence model with mean pooling, not {pooling!r}"
        )

    class SentenceVector(torch.nn.Module):
        """Mean of the token vectors (padding masked out), L2-normalized: what
        the sentence model's Pooling and Normalize modules compute."""

        def __init__(self, transformer) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )["last_hidden_state"]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # tracing reads attributes that log noise
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Tracing is deprecated in favour of torch.compile/export, which need a
            # compiler and a long warm-up per process; the pinned torch 2.13 ships it.
            for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            return torch.jit.trace(
                SentenceVector(modules[0].auto_model),
                example_kwarg_inputs=example,
                strict=False,
                check_trace=False,
            )
    finally:
        transformers_logging.set_verbosity(verbosity)


def _quantized(model):
    """A copy of ``model`` with int8 dynamically quantized linear layers
    (``torch.ao``'s dynamic quantization: deprecated in favour of torchao, still
    shipped by the pinned torch 2.13, which is what this needs)."""
    import copy
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        return quantize_dynamic(
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}
        )
