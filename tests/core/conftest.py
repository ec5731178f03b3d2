"""Fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from monitor import native


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test with the compiled kernels (``monitor._native``), then with the numpy code
    that stands in for them (a module uses it for all its tests with
    ``pytestmark = pytest.mark.usefixtures("kernels")``)."""
    compiled = request.param == "compiled"
    if compiled and not native.available():
        pytest.fail("monitor._native is not built (tests/core/test_native.py says why)")
    before = native.use(compiled)
    yield request.param
    native.use(before)
