"""MovieLens raw files, as described in the public MovieLens READMEs.

ml-100k: ``u.data`` (tab: user item rating timestamp), ``u.item`` (``|``:
id, title, release date, video release date, IMDb URL, 19 genre flags),
``u.user`` (``|``: id, age, gender, occupation, zip).
ml-1m: ``ratings.dat``, ``movies.dat`` (id::title::genres joined by ``|``),
``users.dat`` (id::gender::age::occupation::zip), all ``::``-separated.
Both are Latin-1. A rating means the movie was watched: type ``view``,
the rating kept as ``value``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import ReadOptions, canonical_items, canonical_users, only_folder
from shopsense.data.sources import Source, event_chunks, read_delimited, read_table_whole
from shopsense.errors import ShopsenseError

GENRES_100K = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
RATING_COLUMNS = ["user_id", "item_id", "value", "timestamp"]


def _double_colon(path: Path) -> io.BytesIO:
    """ml-1m's ``::`` separator as a tab, so the fast CSV reader can take it."""
    return io.BytesIO(path.read_bytes().replace(b"::", b"\t"))


def _genre_items(frame: pd.DataFrame, genres: pd.Series) -> pd.DataFrame:
    frame["category"] = genres.map(lambda g: g[0] if g else None)
    frame["genres"] = genres
    return canonical_items(frame, {})


def _small_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """A Latin-1 items or users file read whole: ``|``-separated in ml-100k,
    ``::`` in ml-1m (``.dat``)."""
    ml1m = path.suffix == ".dat"
    return read_table_whole(
        read_delimited(
            _double_colon(path) if ml1m else path,
            "\t" if ml1m else "|",
            columns,
            encoding="latin-1",
            quoting=False,
            label=str(path),
        ),
        with_origin=True,
    )


def _ml100k(folder: Path, options: ReadOptions) -> Source:
    data = folder / "u.data"
    item_cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES_100K]
    items = users = None
    if (folder / "u.item").is_file():
        raw = _small_table(folder / "u.item", item_cols)
        flags = raw[GENRES_100K].fillna("0").to_numpy() == "1"
        genres = pd.Series(
            [[g for g, f in zip(GENRES_100K, row, strict=True) if f] for row in flags]
        )
        items = _genre_items(raw.drop(columns=[*GENRES_100K, "video_release_date"]), genres)
    if (folder / "u.user").is_file():
        user_cols = ["user_id", "age", "gender", "occupation", "zip_code"]
        users = canonical_users(_small_table(folder / "u.user", user_cols), {})
    return _source(
        "movielens:ml-100k",
        read_delimited(data, "\t", RATING_COLUMNS, options.chunk_rows, quoting=False),
        data,
        items,
        users,
        options,
    )


def _ml1m(folder: Path, options: ReadOptions) -> Source:
    data = folder / "ratings.dat"
    items = users = None
    if (folder / "movies.dat").is_file():
        raw = _small_table(folder / "movies.dat", ["item_id", "title", "genres"])
        genres = raw.pop("genres").fillna("").map(lambda g: [x for x in g.split("|") if x])
        items = _genre_items(raw, genres)
    if (folder / "users.dat").is_file():
        user_cols = ["user_id", "gender", "age", "occupation", "zip_code"]
        users = canonical_users(_small_table(folder / "users.dat", user_cols), {})
    chunks = read_delimited(
        _double_colon(data),
        "\t",
        RATING_COLUMNS,
        options.chunk_rows,
        encoding="latin-1",
        quoting=False,
        label=str(data),
    )
    return _source("movielens:ml-1m", chunks, data, items, users, options)


def _source(name, chunks, data: Path, items, users, options: ReadOptions) -> Source:
    def transform(frame: pd.DataFrame) -> pd.DataFrame:
        frame["type"] = options.default_type or "view"
        return frame

    return Source(
        name=name,
        events=event_chunks(chunks, transform),
        items=items,
        users=users,
        files=[str(data)],
    )


def read(paths: list[Path], options: ReadOptions) -> Source:
    folder = only_folder(paths, "movielens")
    if (folder / "u.data").is_file():
        return _ml100k(folder, options)
    if (folder / "ratings.dat").is_file():
        return _ml1m(folder, options)
    raise ShopsenseError(f"{folder} holds neither u.data (ml-100k) nor ratings.dat (ml-1m)")
