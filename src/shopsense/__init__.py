"""shopsense: search and recommendation engine for online stores.

The pipeline's stages live in sub-packages: ``data`` (collect, clean, split,
synthetic store), ``models`` (recommenders), ``evaluation`` (metrics and the
full-ranking harness). The names below are the ones most code needs.
"""

from shopsense.data.dataset import Dataset
from shopsense.data.split import Split, split_dataset
from shopsense.errors import ShopsenseError
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.registry import create_model, load_model, model_names

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "ShopsenseError",
    "Split",
    "__version__",
    "create_model",
    "evaluate",
    "load_model",
    "model_names",
    "split_dataset",
]
