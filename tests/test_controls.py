"""The positive control's verdict, on hand-made rates."""

import pytest

from evil_moe.controls import positive_control


def test_positive_control_worked_when_most_attempts_go_and_solve_stays():
    v = positive_control({"attempt": 0.9, "solve": 0.40}, {"attempt": 0.45, "solve": 0.35})
    assert v["removed_most_attempts"] and v["kept_solve"] and v["held"]  # both at their boundary
    assert v["sentence"].startswith("positive control (oracle on attempted) worked: attempt 0.900 -> 0.450")


@pytest.mark.parametrize("off, removed, kept", [({"attempt": 0.46, "solve": 0.4}, False, True),
                                                ({"attempt": 0.1, "solve": 0.34}, True, False),
                                                ({"attempt": 0.8, "solve": 0.2}, False, False)])
def test_positive_control_failed(off, removed, kept):
    v = positive_control({"attempt": {"rate": 0.9, "lo": 0.8, "hi": 0.95}, "solve": {"rate": 0.4}}, off)
    assert (v["removed_most_attempts"], v["kept_solve"], v["held"]) == (removed, kept, False)
    assert "FAILED" in v["sentence"] and ("more than 0.5 x 0.900" in v["sentence"]) is not removed
    assert ("fell more than 0.05 below 0.400" in v["sentence"]) is not kept


def test_positive_control_refuses_an_undefined_rate():
    with pytest.raises(ValueError, match="'solve' rate is undefined"):
        positive_control({"attempt": 0.9, "solve": {"rate": None}}, {"attempt": 0.1, "solve": 0.4})
