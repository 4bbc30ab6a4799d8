"""Where each effective policy value comes from (``outrider route``)."""

from __future__ import annotations

from outrider.config.loader import parse_config
from outrider.config.provenance import BUILTIN, explained_policy

CONFIG = """
[server]
hostname = "mta.outrider.test"
[[listener]]
address = "127.0.0.1:0"
[domain-macro]
bigmail = ["example.net"]
[domain."*"]
retry-after = ["5m"]
[domain."*.net"]
max-smtp-out = 7
[domain."$bigmail"]
max-msg-rate = "100/s"
[domain."example.net"]
bounce-after = "2d"
[virtual-mta.mta10]
smtp-source-host = "127.0.0.10"
[virtual-mta.mta10.domain."example.net"]
max-smtp-out = 3
"""


def test_each_value_names_the_table_that_set_it() -> None:
    config = parse_config(CONFIG)
    policy = explained_policy(config, "Example.NET", None)
    assert policy["retry-after"] == {"value": [300.0], "from": 'domain."*"'}
    assert policy["max-smtp-out"] == {"value": 7, "from": 'domain."*.net"'}
    assert policy["max-msg-rate"]["from"] == 'domain."$bigmail"'
    assert policy["bounce-after"] == {"value": 172800.0, "from": 'domain."example.net"'}
    assert policy["smtp-port"] == {"value": 25, "from": BUILTIN}
    as_vmta = explained_policy(config, "example.net", "mta10")
    assert as_vmta["max-smtp-out"] == {
        "value": 3,
        "from": 'virtual-mta.mta10.domain."example.net"',
    }
    other = explained_policy(config, "example.org", "mta10")
    assert other["max-smtp-out"] == {"value": 20, "from": BUILTIN}


def test_show_config_lists_what_differs_and_every_key_when_effective() -> None:
    from outrider.admin.tables import config as render
    from outrider.config.dump import dump

    config = parse_config(CONFIG)
    plain = dump(config)
    assert plain["server"] == {"hostname": "mta.outrider.test"}
    assert plain["listener"] == [{"address": ["127.0.0.1", 0]}]
    assert plain['domain."*.net"'] == {"max-smtp-out": 7}
    assert plain['domain."$bigmail"'] == {"max-msg-rate": "100/s"}
    assert plain['virtual-mta.mta10.domain."example.net"'] == {"max-smtp-out": 3}
    assert "dns" not in plain  # nothing set
    full = dump(config, effective=True)
    assert full["dns"]["timeout"] == 5.0
    assert full['domain."*"']["retry-after"] == [300.0]
    assert full['domain."*"']["max-smtp-out"] == 20
    text = render(plain, "/etc/outrider/outrider.toml")
    assert '[domain."*.net"]\nmax-smtp-out = 7' in text
    assert '[[listener]]\naddress = ["127.0.0.1", 0]' in text
