"""Every bad-input case of docs/validation.md raises a clear, typed error."""

from pathlib import Path

import pytest

from .bad_input_cases import cases

CASES = cases()


@pytest.mark.parametrize("name, action", CASES, ids=[name for name, _ in CASES])
def test_bad_input_raises_a_clear_error(name, action):
    with pytest.raises((ValueError, TypeError, KeyError, FileNotFoundError)) as info:
        action()
    message = str(info.value)
    assert len(message) > 20 and "Traceback" not in message
    assert "tensorflow" not in message.lower()


def test_docs_table_is_current():
    table = (Path(__file__).resolve().parent.parent / "docs" / "validation.md").read_text()
    for name, _ in CASES:
        assert f"| {name} |" in table, f"docs/validation.md lacks the case {name!r}: rerun python -m tests.bad_input_cases"
    assert "(no error)" not in table
