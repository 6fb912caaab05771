"""Every example in a docstring runs and says what it shows (the style of river's
estimators: a docstring example is a test), in the detectors and in the services."""

import doctest
import importlib
import pkgutil

import pytest

import models
import stream

MODULES = sorted(m.name for pkg in (models, stream)
                 for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
