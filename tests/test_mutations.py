"""tests/mutations.py stays runnable: every patch still finds its text, and every test it names exists.
(Running the mutations themselves takes half an hour: `python tests/mutations.py`.)"""

import importlib
from pathlib import Path

import pytest

import mutations


@pytest.mark.parametrize("mutation", mutations.MUTATIONS, ids=lambda m: m.name)
def test_each_mutation_applies_and_names_real_tests(mutation):
    text = (mutations.ROOT / mutation.path).read_text()
    assert mutations.patched(text, mutation) != text
    for test in mutation.tests:
        path, function = test.split("::")
        assert (mutations.ROOT / path).is_file(), test
        assert hasattr(importlib.import_module(Path(path).stem), function.split("[")[0]), test


def test_moved_code_is_an_error_naming_the_mutation():
    mutation = mutations.MUTATIONS[0]
    with pytest.raises(mutations.PatchError, match=f"mutation {mutation.name}: .* has 0 copies of"):
        mutations.patched("nothing of it here", mutation)
