"""Fine-tuning the sentence encoder on a store's own queries.

Off-the-shelf all-MiniLM-L6-v2 was trained on general web pairs; a store's
queries ("1/2 in. pvc elbow") and titles read differently. Training it on
(query, relevant product) pairs from graded judgments or click logs, with
in-batch negatives (the multiple-negatives ranking loss), teaches it the
store's language. Six small layers train on a CPU in minutes. The result is
saved with sentence-transformers (safetensors weights, JSON configs).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np

from shopsense.errors import ShopsenseError
from shopsense.search.evaluate import RELEVANT_GRADE, Judgments

SCALE = 20.0  # cosine similarities scaled before the softmax


def training_pairs(
    judgments: Judgments, titles: dict[str, str], min_grade: float = RELEVANT_GRADE
) -> list[tuple[str, str]]:
    """(query, title) for every judged product at or above ``min_grade``."""
    pairs = []
    for qid, text in judgments.queries.items():
        for item, grade in judgments.grades.get(qid, {}).items():
            if grade >= min_grade and item in titles and titles[item]:
                pairs.append((text, titles[item]))
    if not pairs:
        raise ShopsenseError("no relevant (query, product) pair to train the encoder on")
    return pairs


def finetune_encoder(
    pairs: list[tuple[str, str]],
    out: Path,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    seed: int = 0,
    base_model: str | None = None,
    progress: bool = False,
) -> Path:
    """Train a copy of the encoder on ``pairs`` and save it to ``out``."""
    import torch
    from tqdm import tqdm

    from shopsense.features.sentence import sentence_model

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
            queries = _embed(model, [q for q, _ in batch])
            titles = _embed(model, [t for _, t in batch])
            scores = SCALE * queries @ titles.T
            # A title twice in a batch is a positive for both queries, not a negative.
            same = np.array([[a[1] == b[1] for b in batch] for a in batch])
            mask = torch.from_numpy(same & ~np.eye(len(batch), dtype=bool))
            scores = scores.masked_fill(mask, float("-inf"))
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
    model.save(str(out), safe_serialization=True)
    return out


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
