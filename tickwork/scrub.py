"""Remove secrets from text before it is stored or logged.

Exceptions and step output can carry tokens, passwords or URLs with credentials
(MetaDeploy stores exceptions that may contain customer metadata). Everything that
reaches a run record or a job's ``exception`` column passes through :func:`scrub`.
"""

import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]+(?=@)"), r"\g<pre>***"),
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    # key=value / key: value / "key": "value" for secret-looking keys
    (
        re.compile(
            r"(?i)(?P<key>[\"']?\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|"
            r"access[_-]?key|private[_-]?key|session[_-]?id|credential)s?[\"']?\s*[:=]\s*)"
            r"(?P<q>[\"']?)[^\s\"',;}]+"
        ),
        r"\g<key>\g<q>***",
    ),
    # Salesforce-style session ids (00D...!...) and long opaque tokens
    (re.compile(r"\b00D\w{12,15}![\w.]{20,}"), "***"),
)


def scrub(text: str | None, extra_secrets: tuple[str, ...] = ()) -> str | None:
    """Return ``text`` with credentials masked; ``None`` stays ``None``."""
    if text is None:
        return None
    for secret in extra_secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
