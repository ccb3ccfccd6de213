"""The examples in the docstrings of heterogeneity.optim (and heterogeneity.tree) stay true."""
import doctest
import importlib
import pkgutil

import pytest

import heterogeneity.optim

MODULES = sorted(
    [f"heterogeneity.optim.{m.name}" for m in pkgutil.iter_modules(heterogeneity.optim.__path__)]
    + ["heterogeneity.optim", "heterogeneity.tree"]
)
# every public optimizer / transform has an example
WITH_EXAMPLES = [n for n in heterogeneity.optim.__all__
                 if callable(getattr(heterogeneity.optim, n)) and not isinstance(getattr(heterogeneity.optim, n), type)
                 and n != "scale_by_sign"]  # Optax's own


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE,
                             raise_on_error=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_every_public_function_has_math_args_returns_an_example_and_a_reference(name):
    doc = getattr(heterogeneity.optim, name).__doc__ or ""
    assert ">>> " in doc, f"{name}: no doctest example"
    if name not in ("get", "factory", "names", "is_multi_worker"):
        assert "Args:" in doc and "Returns:" in doc, f"{name}: no Args/Returns"
        assert ".. math::" in doc or ":math:" in doc, f"{name}: no LaTeX update rule"
        refs = ("[Tomihari25", "[Zhang24", "[SignMomentum25", "[Xie24", "[Kingma15", "[Loshchilov19", "[Chen23",
                "[Bernstein18", "[Bernstein19", "[Jin20", "[Karimireddy19")
        assert any(r in doc for r in refs) or name in ("sgd", "rmsprop", "rotate", "rotate_transpose"), \
            f"{name}: no reference key"
