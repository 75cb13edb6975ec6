"""Models: pretrained backbones (:mod:`~tl_course.models.backbones`, a registry), the transfer
steps (:mod:`~tl_course.models.transfer`: freeze, heads, parameter groups), a backbone's stages
(:mod:`~tl_course.models.stages`), small networks trained from scratch
(:mod:`~tl_course.models.small_cnn`) and parameter-efficient layers (:mod:`~tl_course.models.peft`).

Usage::

    from tl_course.models.backbones import load_backbone
    from tl_course.models import transfer
"""
