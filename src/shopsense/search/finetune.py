"""Fine-tuning the sentence encoder on a store's own queries.

Off-the-shelf all-MiniLM-L6-v2 was trained on general web pairs; a store's
queries ("1/2 in. pvc elbow") and titles read differently. Training it on
(query, relevant product) pairs from graded judgments or click logs, with
in-batch negatives (the multiple-negatives ranking loss) plus, where the
judgments have one, a product judged poor for the same query (a hard
negative: it shares the query's words but not its intent), teaches it the
store's language. Six small layers train on a CPU in minutes. The result is
saved with sentence-transformers (safetensors weights, JSON configs), and
beside it what it was trained on and how (``RECIPE``, JSON), so a ranker
trained later can learn from an encoder that did not see its queries.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from shopsense.errors import ShopsenseError
from shopsense.search.evaluate import RELEVANT_GRADE, Judgments

SCALE = 20.0  # cosine similarities scaled before the softmax
NEGATIVE_GRADE = 1.67  # a product judged at most this is a hard negative for its query
EPOCHS = 2  # passes over the pairs; what the search benchmark measures
RECIPE = "shopsense-training.json"  # a fine-tuned encoder's pairs and settings
RECIPE_SETTINGS = ("epochs", "batch_size", "learning_rate", "seed", "base_model")
CROSS_FIT = "cross-fit"  # a fine-tuned encoder's folder for the fold encoders cut from it

TrainingPair = tuple[str, str, str | None]


def training_pairs(
    judgments: Judgments,
    titles: dict[str, str],
    min_grade: float = RELEVANT_GRADE,
    negative_grade: float | None = NEGATIVE_GRADE,
) -> list[TrainingPair]:
    """(query, title, hard negative title or None) for every judged product at or
    above ``min_grade``; the query's products judged at most ``negative_grade``
    are its hard negatives, taken in turn (None: no hard negatives)."""
    pairs: list[TrainingPair] = []
    for qid, text in judgments.queries.items():
        judged = [
            (item, g) for item, g in judgments.grades.get(qid, {}).items() if titles.get(item)
        ]
        poor = (
            [] if negative_grade is None else [titles[i] for i, g in judged if g <= negative_grade]
        )
        good = [titles[i] for i, g in judged if g >= min_grade]
        for j, title in enumerate(good):
            pairs.append((text, title, poor[j % len(poor)] if poor else None))
    if not pairs:
        raise ShopsenseError("no relevant (query, product) pair to train the encoder on")
    return pairs


def finetune_encoder(
    pairs: list[TrainingPair],
    out: Path,
    epochs: int = EPOCHS,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    seed: int = 0,
    base_model: str | None = None,
    progress: bool = False,
    reuse: bool = False,
) -> Path:
    """Train a copy of the encoder on ``pairs`` and save it, with its recipe, to
    ``out``. With ``reuse``, an encoder already in ``out`` that was trained on
    the same pairs with the same settings is kept as it is: a fine-tune is a
    function of its recipe, and on a large store it takes most of an hour."""
    import torch
    from tqdm import tqdm

    from shopsense.features.sentence import sentence_model

    settings = dict(
        zip(RECIPE_SETTINGS, (epochs, batch_size, learning_rate, seed, base_model), strict=True)
    )
    if reuse and holds_encoder(out, pairs, **settings):
        return out
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(sentence_model("cpu", base_model))  # the cached one stays as it is
    model.max_seq_length = 64
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = epochs * (len(pairs) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
    )
    bar = tqdm(total=steps, disable=not progress, desc="fine-tuning")
    for _ in range(epochs):
        order = rng.permutation(len(pairs))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            # Columns: every positive title, then the hard negatives the batch has.
            columns = [t for _, t, _ in batch] + [n for _, _, n in batch if n is not None]
            queries = _embed(model, [q for q, _, _ in batch])
            scores = SCALE * queries @ _embed(model, columns).T
            # A query's positive title elsewhere in the columns is not a negative for it.
            same = np.array([[title == c for c in columns] for _, title, _ in batch])
            same[np.arange(len(batch)), np.arange(len(batch))] = False
            scores = scores.masked_fill(torch.from_numpy(same), float("-inf"))
            loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(batch)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    (out / RECIPE).unlink(missing_ok=True)  # written last: its presence means the weights are whole
    model.save(str(out), safe_serialization=True)
    (out / RECIPE).write_text(json.dumps({"pairs": pairs, **settings}), encoding="utf-8")
    return out


def holds_encoder(out: Path, pairs: list[TrainingPair], **settings: object) -> bool:
    """Whether ``out`` holds an encoder fine-tuned on ``pairs`` with ``settings``
    (those of ``RECIPE_SETTINGS``); a folder with a broken recipe holds none."""
    try:
        recipe = _recipe(str(out))
    except ShopsenseError:
        return False
    return (
        recipe is not None
        and (out / "model.safetensors").is_file()
        and recipe == {**settings, "pairs": [tuple(pair) for pair in pairs]}
    )


def trained_queries(model_path: str | None) -> set[str]:
    """The query texts a fine-tuned encoder learnt from (none for the packaged
    model, or for one fine-tuned before recipes were saved)."""
    recipe = _recipe(model_path)
    return set() if recipe is None else {query for query, _, _ in recipe["pairs"]}


def refit_without(
    model_path: str, queries: set[str], out: Path, progress: bool = False, reuse: bool = False
) -> Path:
    """Fine-tune again as ``model_path`` was, leaving out the pairs of ``queries``:
    an encoder that has not seen their answers (with ``reuse``, the one already
    in ``out`` if it was fine-tuned so)."""
    recipe = _recipe(model_path)
    if recipe is None:
        raise ShopsenseError(f"{model_path} has no {RECIPE}: it cannot be fine-tuned again")
    pairs = [pair for pair in recipe.pop("pairs") if pair[0] not in queries]
    if not pairs:
        raise ShopsenseError("no (query, product) pair is left to fine-tune the encoder on")
    return finetune_encoder(pairs, out, **recipe, progress=progress, reuse=reuse)


def _recipe(model_path: str | None) -> dict | None:
    path = None if model_path is None else Path(model_path) / RECIPE
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        recipe = {key: saved[key] for key in RECIPE_SETTINGS}
        recipe["pairs"] = [
            (str(q), str(t), None if n is None else str(n)) for q, t, n in saved["pairs"]
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise ShopsenseError(f"{path} is not a fine-tuning recipe ({e!r})") from None
    return recipe


def _embed(model, texts: list[str]):
    import torch

    features = model.preprocess(texts)
    features = {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
    out = model.forward(features)["sentence_embedding"]
    return torch.nn.functional.normalize(out, dim=-1)


def model_tag(model_path: str | None) -> str:
    """A name for a model's embeddings: the packaged one, or a fine-tune by its weights' hash."""
    if model_path is None:
        return "all-MiniLM-L6-v2"
    weights = Path(model_path) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file() else "x"
    return f"finetuned-{digest}"
