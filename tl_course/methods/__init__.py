"""Transfer methods, one idea per module: :mod:`~tl_course.methods.adaptation` (CORAL, DANN),
:mod:`~tl_course.methods.shift` (covariate shift, importance weights),
:mod:`~tl_course.methods.heterogeneous` (linking different feature spaces with CCA),
:mod:`~tl_course.methods.multitask` (multi-task and self-taught learning),
:mod:`~tl_course.methods.distillation` (knowledge distillation) and
:mod:`~tl_course.methods.clustering` (unsupervised transfer).

Usage::

    from tl_course.methods.adaptation import coral_align
"""
