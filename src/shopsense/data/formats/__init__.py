"""Format readers, by the name ``shopsense ingest --format`` takes.

Each reader turns the user's paths into a :class:`shopsense.data.sources.Source`;
adding a format is one file here plus one line in ``FORMATS``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from shopsense.data.formats import (
    amazon,
    diginetica,
    generic,
    homedepot,
    movielens,
    recbole,
    retailrocket,
    sequences,
    taobao,
)
from shopsense.data.formats.common import ReadOptions
from shopsense.data.sources import Source
from shopsense.errors import ShopsenseError

Reader = Callable[[list[Path], ReadOptions], Source]

FORMATS: dict[str, Reader] = {
    "csv": partial(generic.read, "csv"),
    "tsv": partial(generic.read, "tsv"),
    "jsonl": partial(generic.read, "jsonl"),
    "parquet": partial(generic.read, "parquet"),
    "taobao": taobao.read,
    "amazon": amazon.read,
    "sequences": sequences.read,
    "recbole": recbole.read,
    "movielens": movielens.read,
    "diginetica": diginetica.read,
    "homedepot": homedepot.read,
    "retailrocket": retailrocket.read,
}


def open_source(fmt: str, paths: list[Path], options: ReadOptions | None = None) -> Source:
    if fmt not in FORMATS:
        raise ShopsenseError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt](paths, options or ReadOptions())


__all__ = ["FORMATS", "ReadOptions", "open_source"]
