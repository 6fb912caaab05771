"""Every example in the detectors' docstrings runs and says what it shows (the style of
river's estimators: a docstring example is a test)."""

import doctest
import importlib
import pkgutil

import pytest

import models

MODULES = sorted(m.name for m in pkgutil.iter_modules(models.__path__, "models."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
