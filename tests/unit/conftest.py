import pytest

from tests.conftest import Embedded


@pytest.fixture
def system(embedded: Embedded) -> Embedded:
    """The system under test for scheduler behaviour: in-process here."""
    return embedded
