from __future__ import annotations

from pathlib import Path

import pytest

from outrider.config.dump import dump
from outrider.config.loader import parse_config
from outrider.config.model import ConfigError
from outrider.delivery.local_transport import LocalDelivery
from outrider.feedback.consumer import FeedbackConsumer
from outrider.feedback.step import verp_from_config
from outrider.feedback.transport import BounceTransport
from outrider.intake.build import intake_checks
from outrider.intake.checks import Relay

BASE = '[[listener]]\naddress = "127.0.0.1:2525"\n'


def test_bounce_domain_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config(BASE + '[bounce-domain."Bounce.Example.com"]\nverp = true\n')
    settings = config.bounce_domains["bounce.example.com"]
    assert settings.verp
    assert settings.secret_file == tmp_path / "var/verp-secret"
    assert 'bounce-domain."bounce.example.com"' in dump(config, effective=True)
    assert config.accounting.records == ("d", "b", "t", "q", "rb", "f")
    step = verp_from_config(config)
    assert step is not None and "bounce.example.com" in step.secrets
    assert (tmp_path / "var/verp-secret").stat().st_mode & 0o777 == 0o600
    relay = next(c for c in intake_checks(config, None, None) if isinstance(c, Relay))  # type: ignore[arg-type]
    assert "bounce.example.com" in relay.relay_domains


def test_verp_off_means_no_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert verp_from_config(parse_config(BASE + '[bounce-domain."b.example"]\n')) is None


def test_bad_tables_are_located() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(
            BASE
            + '[bounce-domain."b.example"]\nverp = "yes"\n'
            + '[bounce-domain."l.example"]\n'
            + '[local-domain."l.example"]\nmailboxes = ["a"]\n'
        )
    text = str(err.value)
    assert "bounce-domain.b.example.verp" in text or 'bounce-domain."b.example".verp' in text
    assert "also a [local-domain]" in text


def test_selector_routes_bounce_domains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config(BASE + '[bounce-domain."b.example"]\n')
    remote = object()
    delivery = LocalDelivery(config, remote, lambda: None)  # type: ignore[arg-type,return-value]
    feedback = BounceTransport(FeedbackConsumer({}, None, lambda e: None, "h"))
    policy = config.policy_for("b.example")
    assert delivery("b.example", policy) is delivery.outbound  # not attached yet: relayed
    delivery.feedback = feedback
    assert delivery("b.example", policy) is feedback
    assert delivery("example.org", policy) is delivery.outbound
