from tickwork.scrub import scrub


def test_credentials_are_masked() -> None:
    text = (
        "connect postgresql://app:hunter2@db/x failed; Authorization: Bearer abcdefghijklmnop; "
        "access_token=00Dxx0000001gPF!AQ4AQFhZ; password: 's3cret'"
    )
    cleaned = scrub(text)
    assert cleaned is not None
    for secret in ("hunter2", "abcdefghijklmnop", "00Dxx0000001gPF", "s3cret"):
        assert secret not in cleaned
    assert "postgresql://app:***@db/x" in cleaned


def test_explicit_secrets_are_masked() -> None:
    assert scrub("token is XYZ-123-abc", ("XYZ-123-abc",)) == "token is ***"


def test_none_stays_none() -> None:
    assert scrub(None) is None
