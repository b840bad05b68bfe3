from __future__ import annotations

import pytest

from integration.channels.support import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
