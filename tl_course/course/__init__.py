"""The course around the notebooks: checked exercises (:mod:`~tl_course.course.exercises`, one
module of exercises per notebook in :mod:`~tl_course.course.exercise_sets`), the student edition
(:mod:`~tl_course.course.student`), running notebooks (:mod:`~tl_course.course.notebooks`),
presenting mode (:mod:`~tl_course.course.present`), live explorers
(:mod:`~tl_course.course.widgets`), the Chinese edition (:mod:`~tl_course.course.translation`) and
the course as a static book (:mod:`~tl_course.course.book`).

Usage::

    from tl_course.course.exercises import get_exercise
"""
