"""course.notebook.use: the learner's function once its check passed, minidiff's otherwise, said in one line."""

from minidiff.course.checks.core import exercise
from minidiff.course.notebook import use


def reference(x):
    return 2 * x


@exercise("98", "double", points=1)
def check_double(t, fn):
    t.close(t.call(fn, 3.0), 6.0, "double(3) = 6", hint="multiply by 2")


def test_use_picks_the_learners_function_only_after_its_check_passed(capsys):
    def mine(x):
        return x + x

    def wrong(x):
        return x * 3

    check_double(wrong, quiet=True)
    assert use(wrong, reference, "double") is reference
    assert "using minidiff's double" in capsys.readouterr().out
    check_double(mine, quiet=True)
    assert use(mine, reference, "double") is mine
    assert capsys.readouterr().out.strip() == "using your double (its check passed)"
    check_double(wrong, quiet=True)  # the last check counts
    assert use(wrong, reference, "double") is reference


def test_use_falls_back_for_an_exercise_never_checked(capsys):
    assert use(lambda x: x, reference, "never_checked") is reference
    assert "using minidiff's never_checked" in capsys.readouterr().out
