"""The docstring examples of `heterogeneity.curvature` and `heterogeneity.metrics` run and print
what they show (tiny quadratics and diagonal operators: the whole file takes well under a minute)."""
import doctest
import importlib
import pkgutil

import pytest

import heterogeneity.curvature
import heterogeneity.metrics


def _modules():
    names = []
    for pkg in (heterogeneity.curvature, heterogeneity.metrics):
        names += [pkg.__name__] + [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]
    return sorted(names)


def _with_examples(name):
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    return [t for t in tests if t.examples]


WITH_EXAMPLES = [name for name in _modules() if _with_examples(name)]


def test_the_estimator_modules_have_examples():
    for name in ("heterogeneity.curvature._blockwise", "heterogeneity.curvature._estimators",
                 "heterogeneity.curvature._results", "heterogeneity.metrics._divergence",
                 "heterogeneity.metrics._gradient", "heterogeneity.metrics._lambda", "heterogeneity.metrics._geometry",
                 "heterogeneity.metrics._attention", "heterogeneity.metrics._correlation", "heterogeneity.metrics._logging"):
        assert name in WITH_EXAMPLES, name


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    out = []
    for test in _with_examples(name):
        runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, "".join(out)
