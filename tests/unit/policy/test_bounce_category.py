"""Bounce categories: real provider replies, enhanced codes, expiry, rules files."""

from __future__ import annotations

from pathlib import Path

import pytest

from outrider.config.loader import ConfigError, load_config
from outrider.policy.bounce_category import (
    CATEGORIES,
    BounceClassifier,
    RulesFileError,
    classify,
    parse_rules,
    read_rules,
    shipped_rules,
    status_category,
)

# (enhanced status, reply as logged, category): texts as the providers send them.
REPLIES = [
    # Gmail
    ("5.1.1", "550-5.1.1 The email account that you tried to reach does not exist. Please try "
     "550-5.1.1 double-checking the recipient's email address for typos or 550 5.1.1 "
     "unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser x12si - gsmtp",
     "bad-mailbox"),
    ("5.2.1", "550 5.2.1 The email account that you tried to reach is disabled. - gsmtp",
     "inactive-mailbox"),
    ("4.2.2", "452-4.2.2 The email account that you tried to reach is over quota. Please direct "
     "452 4.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
     "quota-issues"),
    ("5.7.1", "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely "
     "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been "
     "blocked. - gsmtp", "spam-related"),
    ("4.7.0", "421-4.7.0 [192.0.2.1] This message is suspicious due to the very low reputation "
     "of the sending IP address. - gsmtp", "spam-related"),
    ("5.7.26", "550-5.7.26 This mail has been blocked because the sender is unauthenticated. "
     "Gmail requires all senders to authenticate with either SPF or DKIM.", "policy-related"),
    ("5.7.26", "550-5.7.26 Unauthenticated email from example.com is not accepted due to "
     "domain's DMARC policy. - gsmtp", "policy-related"),
    ("5.7.0", "552-5.7.0 This message was blocked because its content presents a potential "
     "security issue. - gsmtp", "virus-related"),
    ("5.2.3", "552-5.2.3 Your message exceeded Google's message size limits. - gsmtp",
     "content-related"),
    ("5.7.25", "550-5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR "
     "record setup, or the corresponding forward DNS entry does not point to the sending IP.",
     "policy-related"),
    # Yahoo and AOL
    ("5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account "
     "(someone@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com", "bad-mailbox"),
    ("5.0.0", "554 delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. "
     "This mailbox is disabled (554.30). - mta1.mail.bf1.yahoo.com", "inactive-mailbox"),
    ("4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
     "volume or user complaints - 4.16.55.1", "spam-related"),
    ("5.7.9", "554 5.7.9 Message not accepted for policy reasons.  See "
     "https://help.yahoo.com/kb/postmaster/SLN7253.html", "policy-related"),
    ("5.2.1", "521 5.2.1 :  AOL will not accept delivery of this message.", "spam-related"),
    ("4.0.0", "421 DYN:T1 192.0.2.1 ...", "spam-related"),
    # Outlook, Hotmail, Office 365
    ("5.5.0", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
     "[BN1NAM02FT010.eop-nam02.prod.protection.outlook.com]", "bad-mailbox"),
    ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
     "address lookup", "bad-mailbox"),
    ("5.7.1", "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
     "your Internet service provider since part of their network is on our block list "
     "(S3150).", "spam-related"),
    ("5.7.606", "550 5.7.606 Access denied, banned sending IP [192.0.2.1].", "spam-related"),
    ("4.7.500", "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
     "spam-related"),
    ("5.7.520", "550 5.7.520 Access denied, Your organization does not allow external "
     "forwarding.", "policy-related"),
    ("5.2.2", "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException",
     "quota-issues"),
    ("5.4.1", "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
     "[DB5EUR03FT010.eop-EUR03.prod.protection.outlook.com]", "bad-mailbox"),
    # Apple iCloud
    ("5.1.1", "550 5.1.1 <x@icloud.com>: user does not exist", "bad-mailbox"),
    ("5.2.2", "552 5.2.2 <x@icloud.com>: user is over quota", "quota-issues"),
    ("5.7.1", "554 5.7.1 [CS01] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137", "spam-related"),
    # GMX and web.de
    ("5.0.0", "554-Transaction failed 554-Reject due to policy restrictions. 554 For "
     "explanation visit https://postmaster.gmx.net/en/error-messages?ip=192.0.2.1&c=bl",
     "spam-related"),
    ("5.0.0", "554 Reject due to policy restrictions. For explanation visit "
     "https://postmaster.web.de/en/error-messages?ip=192.0.2.1&c=hi", "policy-related"),
    ("5.0.0", "552 Requested mail action aborted: exceeded mailsize limit", "content-related"),
    # Orange
    ("5.0.0", "550 mwinf5c21 ME Adresse IP source bloquee pour incident de spam. Client host "
     "blocked for spamming issues. OFR006_102 Ref http://csi.cloudmark.com", "spam-related"),
    ("4.0.0", "421 mwinf5c77 ME Trop de connexions, veuillez verifier votre configuration. Too "
     "many connections, slow down. OFR005_104", "policy-related"),
    ("5.1.1", "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. "
     "OFR_416", "bad-mailbox"),
    ("5.2.2", "552 5.2.2 <x@orange.fr>: Mailbox full / Boite pleine", "quota-issues"),
    # Comcast
    ("5.0.0", "554 resimta-po-12v.sys.comcast.net comcast 192.0.2.1 found on one or more "
     "DNSBLs, see http://postmaster.comcast.net/smtp-error-codes.php#BL000001",
     "spam-related"),
    ("5.1.1", "550 5.1.1 Not our Customer", "bad-mailbox"),
    # Mimecast
    ("5.0.0", "550 Rejected by header based Anti-Spoofing policy: x@example.com", "policy-related"),
    ("5.0.0", "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
     "bad-mailbox"),
    ("5.0.0", "554 Email rejected due to security policies - "
     "https://community.mimecast.com/docs/DOC-1369#554", "policy-related"),
    # Proofpoint, Barracuda, blocklists
    ("5.0.0", "554 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", "spam-related"),
    ("5.7.1", "554 Service unavailable; Client host [192.0.2.1] blocked using Barracuda "
     "Reputation; http://www.barracudanetworks.com/reputation/?r=1&ip=192.0.2.1",
     "spam-related"),
    ("5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
     "zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1", "spam-related"),
    ("5.7.1", "550 5.7.1 Message rejected because of SPF: 192.0.2.1 is not allowed to send",
     "policy-related"),
    ("5.7.1", "550 5.7.1 DKIM signature verification failed", "policy-related"),
    # Postfix, Exim, qmail and friends
    ("5.1.1", "550 5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual "
     "mailbox table", "bad-mailbox"),
    ("5.0.0", "550 sorry, no mailbox here by that name. (#5.1.1)", "bad-mailbox"),
    ("5.2.2", "552 5.2.2 Mailbox full", "quota-issues"),
    ("4.2.2", "452 4.2.2 Over quota", "quota-issues"),
    ("5.2.1", "550 5.2.1 account disabled", "inactive-mailbox"),
    ("5.7.1", "554 5.7.1 <x@example.org>: Relay access denied", "relaying-issues"),
    ("5.7.1", "550 5.7.1 <a@sender.test>: Sender address rejected: Domain not found",
     "invalid-sender"),
    ("5.7.1", "554 5.7.1 Message rejected: virus found (Eicar-Test-Signature)", "virus-related"),
    ("4.7.1", "450 4.7.1 <x@example.org>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.org.html", "policy-related"),
    ("5.7.1", "554 5.7.1 Helo command rejected: Host not found", "bad-configuration"),
    ("5.7.0", "530 5.7.0 Must issue a STARTTLS command first", "bad-configuration"),
    ("5.5.2", "500 5.5.2 Syntax error, command unrecognized", "protocol-errors"),
    # Yandex, Trend Micro, Symantec, Cisco, T-Online
    ("5.2.2", "552 5.2.2 Mailbox size limit exceeded", "quota-issues"),
    ("5.7.1", "554 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc",
     "spam-related"),
    ("5.7.1", "550 5.7.1 Message rejected by Trend Micro Email Reputation Services (ERS)",
     "spam-related"),
    ("5.0.0", "553-you are trying to use me [server-3.tower-1.messagelabs.com] as a relay, "
     "but I have not been configured to let you (192.0.2.1, mx.example.com) do this.",
     "relaying-issues"),
    ("5.1.0", "550 #5.1.0 Address rejected.", "bad-mailbox"),
    ("5.0.0", "554 IP=192.0.2.1 - A problem occurred. (Ask your postmaster for help or to "
     "contact tosa@rx.t-online.de to clarify.) (BL)", "spam-related"),
    ("5.7.27", "550-5.7.27 The sender domain has a null MX record", "invalid-sender"),
    ("4.0.0", "451 Message temporarily deferred due to unresolvable RFC.5321 from domain",
     "invalid-sender"),
    ("4.7.652", "451 4.7.652 The mail server [192.0.2.1] has exceeded the maximum number of "
     "connections.", "policy-related"),
    # Outrider's own texts
    ("4.4.1", "451 4.4.1 Connection to mx.example.org (192.0.2.1) failed: [Errno 111] Connect "
     "call failed ('192.0.2.1', 25)", "no-answer-from-host"),
    ("4.4.2", "451 4.4.2 Connection lost: connection reset by peer", "bad-connection"),
    ("4.4.3", "451 4.4.3 DNS lookup for example.org failed: timed out after 5s", "routing-errors"),
    ("5.1.2", "550 5.1.2 Domain nowhere.example does not exist", "bad-domain"),
    ("5.1.10", "556 5.1.10 Domain example.org does not accept mail (null MX)", "bad-domain"),
    ("5.4.4", "550 5.4.4 Domain example.org has no mail server address", "bad-domain"),
    ("5.4.6", "554 5.4.6 mail for example.org loops back to myself", "routing-errors"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "text", "category"), REPLIES)
def test_provider_replies(status: str, text: str, category: str) -> None:
    assert classify(status, text) == category, BounceClassifier.with_extra().rule_for(text)


@pytest.mark.parametrize(
    ("status", "category"),
    [
        ("5.1.1", "bad-mailbox"),
        ("5.1.10", "bad-mailbox"),
        ("5.1.2", "bad-domain"),
        ("5.2.1", "inactive-mailbox"),
        ("4.2.2", "quota-issues"),
        ("5.2.2", "quota-issues"),
        ("5.7.1", "policy-related"),
        ("4.4.1", "no-answer-from-host"),
        ("4.4.2", "bad-connection"),
        ("5.4.4", "bad-domain"),
        ("4.4.4", "routing-errors"),
        ("5.7.26", "policy-related"),
        ("5.3.4", "content-related"),
        ("5.2.3", "content-related"),
        ("5.5.1", "protocol-errors"),
        ("5.5.9", "protocol-errors"),
        ("5.1.7", "invalid-sender"),
        ("4.4.7", "message-expired"),
        ("5.7.99", "policy-related"),
        ("5.0.0", "other"),
        ("4.0.0", "other"),
        ("9.9.9", "other"),
        ("", "other"),
    ],
)
def test_enhanced_codes_decide_when_no_text_rule_matches(status: str, category: str) -> None:
    assert status_category(status) == category
    assert classify(status, f"550 {status} zzz") == category


def test_expired_wins_over_text_and_code() -> None:
    assert classify("5.1.1", "550 5.1.1 user unknown", expired=True) == "message-expired"


def test_text_rules_come_before_the_code() -> None:
    assert classify("5.1.1", "550 5.1.1 blocked using zen.spamhaus.org") == "spam-related"


def test_shipped_rules_are_many_and_only_known_categories() -> None:
    rules = shipped_rules()
    assert len(rules) >= 70
    assert {r.category for r in rules} <= set(CATEGORIES)
    assert "suppressed" in CATEGORIES and "other" in CATEGORIES and len(CATEGORIES) == 18


def test_administrator_rules_are_asked_first(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("# ours\n\n/user unknown/ inactive-mailbox\n/x\\/y/ other\n")
    classifier = BounceClassifier.from_file(path)
    assert classifier.classify("5.1.1", "550 5.1.1 user unknown") == "inactive-mailbox"
    assert classifier.classify("5.0.0", "550 x/y") == "other"
    assert classifier.rules[0].origin == f"{path}:3"
    assert BounceClassifier.from_file(None).classify("5.1.1", "550 user unknown") == "bad-mailbox"


def test_the_cache_is_bounded_and_answers_the_same() -> None:
    classifier = BounceClassifier(shipped_rules(), cache_size=3)
    texts = [f"550 5.1.1 user {i} unknown" for i in range(10)]
    assert {classifier.classify("5.1.1", t) for t in texts} == {"bad-mailbox"}
    assert len(classifier._cache) == 3
    assert classifier.classify("5.1.1", texts[-1]) == "bad-mailbox"


def test_the_cache_decides_a_repeated_reply_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decided: list[tuple[str, str]] = []
    decide = BounceClassifier._decide

    def counting(self: BounceClassifier, status: str, diagnostic: str) -> str:
        decided.append((status, diagnostic))
        return decide(self, status, diagnostic)

    monkeypatch.setattr(BounceClassifier, "_decide", counting)
    classifier = BounceClassifier(shipped_rules())
    for _ in range(3):
        assert classifier.classify("4.4.1", "421 4.4.1 connection timed out") == (
            "no-answer-from-host"
        )
    assert decided == [("4.4.1", "421 4.4.1 connection timed out")]


def test_non_ascii_text_is_not_prefiltered_by_lower() -> None:
    """re's case folding matches the long s (U+017F) as "s"; str.lower() keeps it, so the
    needle "user unknown" is not in the text although the rule matches. (A fresh classifier:
    the process-wide one may have the answer cached.)"""
    classifier = BounceClassifier(shipped_rules())
    assert classifier.classify("5.0.0", "550 5.0.0 u\u017fer unknown") == "bad-mailbox"


def test_rules_are_case_insensitive() -> None:
    [rule] = parse_rules("/MAILBOX IS FULL/ quota-issues\n", "rules.txt")
    classifier = BounceClassifier([rule])
    assert classifier.classify("5.0.0", "552 mailbox is full") == "quota-issues"


def test_rules_file_errors_name_every_bad_line() -> None:
    text = (
        "/ok/ other\nno slashes\n/(unclosed/ other\n/fine/ not-a-category\n/fine/ nonsense\n/ok/\n"
    )
    with pytest.raises(RulesFileError) as caught:
        parse_rules(text, "rules.txt")
    assert [line for line, _ in caught.value.problems] == [2, 3, 4, 5, 6]
    message = str(caught.value)
    assert "rules.txt:2: expected '/regex/ category'" in message
    assert "rules.txt:3: bad regular expression" in message
    assert "rules.txt:4: unknown category 'not-a-category'" in message
    # the message lists the categories there are, so the fix is at hand
    assert "(known: bad-mailbox, bad-domain, " in message


def test_a_rules_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_bytes("\n/user unknown/ bad-mailbox\n/d\u00e9j\u00e0/ other\n".encode("latin-1"))
    with pytest.raises(RulesFileError) as caught:
        read_rules(path)
    assert caught.value.file == str(path)
    [(line, problem)] = caught.value.problems
    assert line == 3  # where the first byte that is not UTF-8 is
    assert problem.startswith("not UTF-8 text: ")
    assert str(caught.value).startswith(f"{path}:3: not UTF-8 text")


def write_config(tmp_path: Path, rules: str) -> Path:
    (tmp_path / "rules.txt").write_text(rules)
    config = tmp_path / "outrider.toml"
    config.write_text(
        '[server]\nhostname = "mx.test"\n\n[[listener]]\naddress = "127.0.0.1:2525"\n\n'
        f'[bounce-categories]\nrules-file = "{tmp_path / "rules.txt"}"\n'
    )
    return config


def test_config_reports_a_bad_rules_file_with_its_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, "# c\n/good/ spam-related\n/bad/ nonsense\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (8, "bounce-categories.rules-file")
    assert problem.message.startswith(f"{tmp_path / 'rules.txt'}:3: unknown category 'nonsense'")


def test_config_accepts_a_good_rules_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "/good/ spam-related\n"))
    assert config.bounce_categories.rules_file == tmp_path / "rules.txt"
