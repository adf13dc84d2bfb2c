"""The course machinery, beside the library: lesson setup, the checks behind every exercise,
and the grader teachers run. It may import the library; the library never imports it.

    course.notebook   setup(): seeds, threads, figures, device, budget tier; `use()` picks your code or minidiff's
    course.checks     one module per lesson: the graded checks (`check.cosine_betas(cosine_betas)`)
    course.grader     `minidiff-grade`: runs learners' notebooks and scores their exercises
"""
