"""Decisions by a threshold on similarity: pair classification, duplicates and intents."""

from __future__ import annotations

from siamtext.classify.dedup import DuplicateDetector, Duplicates
from siamtext.classify.intent import IntentClassifier
from siamtext.classify.threshold import ThresholdClassifier

__all__ = ["DuplicateDetector", "Duplicates", "IntentClassifier", "ThresholdClassifier"]
