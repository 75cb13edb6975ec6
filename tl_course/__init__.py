"""tl_course: the reusable parts of the transfer-learning course.

One module per idea: ``settings`` (env vars, seeding), ``images`` (safe image loading),
``download`` (verified downloads, safe extraction), ``datasets`` and ``backbones`` (registries),
``features`` (cached backbone features), ``training`` (fit/evaluate), ``transfer`` (freeze,
heads, parameter groups), ``classifier`` (train/save/predict end to end), ``plots``,
``exercises``.

Usage::

    from tl_course import load_dataset, load_backbone, extract_features
"""
from .backbones import load_backbone, load_imagenet_classifier
from .datasets import load_dataset, load_dataset_or_fallback
from .features import extract_features
from .settings import seed_everything
from .training import evaluate, fit

__version__ = "0.1.0"
__all__ = ["load_backbone", "load_imagenet_classifier", "load_dataset", "load_dataset_or_fallback",
           "extract_features", "seed_everything", "evaluate", "fit", "__version__"]
