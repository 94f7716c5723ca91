"""bench/: the heaviest scripts' --smoke runs (test_bench.py has the others and the helpers), in a file of
their own so that pytest-xdist runs them beside the rest. Marked slow: -m 'not slow' leaves them out."""

import pytest

from test_bench import SLOW, check, run_smoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_smoke(tmp_path_factory, weights_path):
    return run_smoke(tmp_path_factory.mktemp("bench_smoke_slow"), weights_path, SLOW)


@pytest.mark.parametrize("name", SLOW)
def test_slow_smoke_run(slow_smoke, name):
    check(slow_smoke[0], name)


def test_slow_smoke_runs_write_nothing_into_the_repository(slow_smoke):
    assert not slow_smoke[1], "a --smoke run wrote into the repository"
