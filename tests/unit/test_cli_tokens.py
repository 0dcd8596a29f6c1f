"""`faas token create --expires`: durations and dates."""

from faas_cli.main import _expiry


def test_expiry_forms() -> None:
    assert _expiry(None) == {}
    assert _expiry("30d") == {"expires_in_s": 30 * 86400}
    assert _expiry("1.5h") == {"expires_in_s": 5400}
    assert _expiry("2W") == {"expires_in_s": 14 * 86400}
    assert _expiry("2030-01-02") == {"expires_at": "2030-01-02T00:00:00+00:00"}
    assert _expiry("2030-01-02T03:04:05+02:00") == {"expires_at": "2030-01-02T03:04:05+02:00"}
