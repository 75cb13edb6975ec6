"""tl_course: the reusable parts of the transfer-learning course.

The layout shows the architecture, one idea per module:

- :mod:`tl_course.data`: datasets (types, registry, one module per source), safe images, manifests;
- :mod:`tl_course.models`: pretrained backbones (registry), the transfer steps, small CNNs,
  parameter-efficient layers, a backbone's stages;
- :mod:`tl_course.features`: frozen backbones run once, their outputs cached;
- :mod:`tl_course.train`: the one training loop (with loss hooks) and evaluation;
- :mod:`tl_course.probe`: linear probes and logistic-regression heads on frozen features;
- :mod:`tl_course.methods`: transfer methods (domain adaptation, covariate shift, heterogeneous
  transfer, multi-task and self-supervised learning, distillation, clustering);
- :mod:`tl_course.classifier` and :mod:`tl_course.evaluation`: the end-to-end classifier;
- :mod:`tl_course.course`: exercises, student edition, running notebooks, presenting mode, widgets;
- :mod:`tl_course.settings`, :mod:`tl_course.cache`, :mod:`tl_course.download`, :mod:`tl_course.plots`,
  :mod:`tl_course.cli`.

Usage::

    from tl_course.data import load_dataset
    from tl_course.models.backbones import load_backbone
    from tl_course.features import extract_features
"""
__version__ = "0.2.0"
