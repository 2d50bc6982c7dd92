"""siamtext: Siamese transformer networks for text similarity."""

from __future__ import annotations

__version__ = "0.1.0"

from siamtext import distributed, losses, recipes
from siamtext.classify import DuplicateDetector, Duplicates, IntentClassifier, ThresholdClassifier
from siamtext.config import SiamTextConfig
from siamtext.corpus import encode_file
from siamtext.data import make_anchor_positives, make_pairs, make_triplets
from siamtext.evaluation import IntentEvaluator, PairClassificationEvaluator, STSEvaluator
from siamtext.hub import HubMixin, push_folder_to_hub
from siamtext.index import Index  # faiss is imported on use
from siamtext.model import SiamText
from siamtext.model_card import ModelCardData, build_model_card
from siamtext.recipes import Recipe, fit_fewshot, select_recipe
from siamtext.resolve import DEFAULT_MODEL, ModelNotFoundError
from siamtext.static import StaticEncoder, distill_static  # model2vec is imported on use

__all__ = [
    "DEFAULT_MODEL",
    "DuplicateDetector",
    "Duplicates",
    "HubMixin",
    "Index",
    "IntentClassifier",
    "IntentEvaluator",
    "ModelCardData",
    "ModelNotFoundError",
    "PairClassificationEvaluator",
    "Recipe",
    "STSEvaluator",
    "SiamText",
    "SiamTextConfig",
    "StaticEncoder",
    "ThresholdClassifier",
    "build_model_card",
    "distill_static",
    "distributed",
    "encode_file",
    "fit_fewshot",
    "losses",
    "make_anchor_positives",
    "make_pairs",
    "make_triplets",
    "push_folder_to_hub",
    "recipes",
    "select_recipe",
    "__version__",
]
