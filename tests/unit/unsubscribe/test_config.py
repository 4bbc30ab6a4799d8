"""The ``[unsubscribe]`` table: keys, defaults and the checks across keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.config.loader import parse_config
from outrider.config.model import ConfigError

LISTENER = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def test_off_by_default() -> None:
    config = parse_config(LISTENER)
    assert not config.unsubscribe.enabled
    assert config.unsubscribe.secret_file == Path.cwd() / "var/unsubscribe-secret"
    assert config.unsubscribe.max_age is None


def test_keys() -> None:
    config = parse_config(
        LISTENER + "[unsubscribe]\n"
        'url = "https://news.example.com/unsubscribe"\n'
        'sender-domains = ["News.Example.com"]\n'
        'max-age = "90d"\n'
        'page-text = "Example News"\n'
    )
    u = config.unsubscribe
    assert u.enabled and u.url == "https://news.example.com/unsubscribe"
    assert u.sender_domains == ("news.example.com",)
    assert u.max_age == 90 * 86400.0 and u.page_text == "Example News"


def test_mailto_must_be_at_a_bounce_domain() -> None:
    table = '[unsubscribe]\nmailto = "u@bounce.example.com"\n'
    with pytest.raises(ConfigError, match=r"unsubscribe\.mailto: must be an address at a"):
        parse_config(LISTENER + table, "t.toml")
    config = parse_config(LISTENER + table + '[bounce-domain."bounce.example.com"]\n')
    assert config.unsubscribe.enabled and config.unsubscribe.mailto == "u@bounce.example.com"


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ('sender-domains = ["a.test"]\n', "unsubscribe.sender-domains"),
        ('url = "ftp://x.test/u"\n', "unsubscribe.url"),
        ('url = "https://x.test/u"\nmailto = "not an address"\n', "unsubscribe.mailto"),
        ('url = "https://x.test/u"\nmax-age = "soon"\n', "unsubscribe.max-age"),
    ],
)
def test_errors_name_the_key(table: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(LISTENER + "[unsubscribe]\n" + table, "t.toml")
    assert where in str(caught.value)


def test_the_injection_request_field() -> None:
    from outrider.inject.request import InjectError, parse_request
    from outrider.inject.submit import submission_for

    base = {
        "envelope_sender": "b@news.test",
        "recipients": [{"email": "a@x.test"}],
        "content": "S: x\r\n\r\nhi",
    }
    assert parse_request(base).unsubscribe is None
    request = parse_request({**base, "unsubscribe": True})
    assert submission_for(request, auth_user="t", client_ip="").unsubscribe is True
    assert parse_request({**base, "unsubscribe": False}).unsubscribe is False
    with pytest.raises(InjectError) as caught:
        parse_request({**base, "unsubscribe": "yes"})
    assert [p.field for p in caught.value.problems] == ["unsubscribe"]
