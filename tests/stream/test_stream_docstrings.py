"""Every example in the service code's docstrings runs and says what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import stream

MODULES = sorted(m.name for m in pkgutil.walk_packages(stream.__path__, "stream."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
