"""Real-world-shaped reports (addresses and hosts changed): DSNs and ARF complaints."""

POSTFIX = b"""Return-Path: <>
Received: by mail.example.net (Postfix) id 3F1C2; Tue, 1 Dec 2026 10:00:00 +0000 (UTC)
Date: Tue,  1 Dec 2026 10:00:00 +0000 (UTC)
From: MAILER-DAEMON@mail.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@bounce.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="3F1C2.1700000000/mail.example.net"
Message-Id: <20261201100000.3F1C2@mail.example.net>

This is a MIME-encapsulated message.

--3F1C2.1700000000/mail.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<ann@example.org>: host mx.example.org[192.0.2.7] said: 550 5.1.1
    <ann@example.org>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--3F1C2.1700000000/mail.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net
X-Postfix-Queue-ID: 3F1C2
X-Postfix-Sender: rfc822; bounces@bounce.example.com
Arrival-Date: Tue,  1 Dec 2026 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; ann@example.org
Original-Recipient: rfc822;ann@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table

--3F1C2.1700000000/mail.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <bounces@bounce.example.com>
From: News <news@news.example.com>
To: ann@example.org
Subject: Spring offers
Message-ID: <Q1ABCDEF@mta.example.com>

--3F1C2.1700000000/mail.example.net--
"""

EXIM = b"""Return-path: <>
Envelope-to: bounces@bounce.example.com
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: bounces@bounce.example.com
Subject: Mail delivery failed: returning message to sender
Content-Type: multipart/report; report-type=delivery-status; boundary=1700000000-eximdsn-12345
MIME-Version: 1.0
X-Failed-Recipients: bob@example.org
Auto-Submitted: auto-replied

--1700000000-eximdsn-12345
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  bob@example.org
    host mx.example.org [192.0.2.8]
    SMTP error from remote mail server after RCPT TO:<bob@example.org>:
    550 No such domain at this location

--1700000000-eximdsn-12345
Content-type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Action: failed
Final-Recipient: rfc822;bob@example.org
Status: 5.0.0
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 No such domain at this location

--1700000000-eximdsn-12345
Content-type: message/rfc822

Return-path: <bounces@bounce.example.com>
Message-ID: <Q2XYZ@mta.example.com>
From: news@news.example.com
To: bob@example.org
Subject: Hello

Hello Bob.

--1700000000-eximdsn-12345--
"""

GMAIL = b"""Delivered-To: bounces@bounce.example.com
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bounces@bounce.example.com
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000abcdef"; report-type=delivery-status

--000000000000abcdef
Content-Type: multipart/related; boundary="000000000000abc123"

--000000000000abc123
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to carol@gmail.example because the address
couldn't be found, or is unable to receive mail.

--000000000000abc123--

--000000000000abcdef
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mta.example.com
Arrival-Date: Tue, 01 Dec 2026 02:00:00 -0800 (PST)
X-Original-Message-ID: <Q3GMAIL@mta.example.com>

Final-Recipient: rfc822; carol@gmail.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (192.0.2.26, the server for the
 domain gmail.example.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does
 not exist. Please try double-checking the recipient's email address for typos or
 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser
Last-Attempt-Date: Tue, 01 Dec 2026 02:00:01 -0800 (PST)

--000000000000abcdef
Content-Type: message/rfc822

Return-Path: <bounces@bounce.example.com>
Message-ID: <Q3GMAIL@mta.example.com>
From: news@news.example.com
To: carol@gmail.example
Subject: Hi

Hi.

--000000000000abcdef--
"""

OUTLOOK = b"""From: postmaster@outlook.example
To: <bounces@bounce.example.com>
Date: Tue, 1 Dec 2026 10:00:00 +0000
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="--_=_swMime_0000"
MIME-Version: 1.0
Subject: Undeliverable: Offers
Auto-Submitted: auto-replied

----_=_swMime_0000
Content-Type: text/html; charset="us-ascii"

<html><body><b>Your message to dave@outlook.example couldn't be delivered.</b></body></html>

----_=_swMime_0000
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB0001.eurprd01.prod.outlook.example
Received-From-MTA: dns;mta.example.com
Arrival-Date: Tue, 1 Dec 2026 10:00:00 +0000

Original-Recipient: rfc822;dave@outlook.example
Final-Recipient: rfc822;dave@outlook.example
Action: failed
Status: 5.5.0
Diagnostic-Code: smtp;550 5.5.0 Requested action not taken: mailbox unavailable
 (S2017062302). [AM0PR01MB0001.eurprd01.prod.outlook.example]

----_=_swMime_0000
Content-Type: text/rfc822-headers

Return-Path: <bounces@bounce.example.com>
Message-ID: <Q4OUT@mta.example.com>
From: <news@news.example.com>
To: <dave@outlook.example>
Subject: Offers

----_=_swMime_0000--
"""

DELAYED = b"""From: MAILER-DAEMON@mail.example.net
To: bounces@bounce.example.com
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Still trying.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net

Final-Recipient: rfc822; erin@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.org: Connection timed out

--B--
"""

# RFC 5965 appendix B.2 (addresses changed).
ARF_RFC5965 = b"""From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <abuse@bounce.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.  For more information
about this format please see http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <somespammer@news.example.com>
Original-Rcpt-To: <user@example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.com
Source-IP: 192.0.2.1
Authentication-Results: mail.example.com;
               spf=fail smtp.mail=somespammer@example.com
Reported-Domain: example.net
Reported-Uri: http://example.net/earn_money.html
Reported-Uri: mailto:user@example.com
Removal-Recipient: user@example.com

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: <somespammer@news.example.com>
Received: from mailserver.example.net (mailserver.example.net
        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;
        Thu, 08 Mar 2005 14:00:00 -0400
To: <Undisclosed Recipients>
Subject: Earn money
MIME-Version: 1.0
Content-type: text/plain
Message-ID: <8787KJKJ3K4J3K4J3K4J3.mail@example.net>
Date: Thu, 02 Sep 2004 12:31:03 -0500

Spam Spam Spam
Spam Spam Spam

--part1_13d.2e68ed54_boundary--
"""

# Yahoo CFL style: the recipient redacted in the report fields, the original's
# Return-Path is our VERP address (filled in by the test).
YAHOO_CFL = b"""From: feedback@arf.mail.yahoo.example
To: fbl@bounce.example.com
Subject: FW: Spring offers
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="----=_Part_1"

------=_Part_1
Content-Type: text/plain; charset=UTF-8

This is an email abuse report for an email message from news.example.com

------=_Part_1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 0.1
Original-Mail-From: <RETURN_PATH>
Original-Rcpt-To: frank@yahoo.example
Received-Date: Tue, 01 Dec 2026 10:00:00 +0000
Source-IP: 198.51.100.25
Reported-Domain: news.example.com

------=_Part_1
Content-Type: message/rfc822

Return-Path: <RETURN_PATH>
Received: from mta.example.com (198.51.100.25) by mta1.mail.yahoo.example
From: News <news@news.example.com>
To: redacted@yahoo.example
Message-ID: <Q5YAHOO@mta.example.com>
Subject: Spring offers

Offers.

------=_Part_1--
"""

# Microsoft JMRP style: the returned message carries the recipient; the report part
# has no Original-Rcpt-To.
MICROSOFT_JMRP = b"""From: staff@hotmail.example
To: jmrp@bounce.example.com
Subject: complaint about message from 198.51.100.25
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="----JMRP"

------JMRP
Content-Type: text/plain

This is an email abuse report for an email message received from IP 198.51.100.25.

------JMRP
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Hotmail FBL
Version: 1
Source-IP: 198.51.100.25
Arrival-Date: Tue, 01 Dec 2026 10:00:00 -0800

------JMRP
Content-Type: message/rfc822

Return-Path: <bounces@news.example.com>
X-HmXmrOriginalRecipient: <gina@hotmail.example>
From: news@news.example.com
To: gina@hotmail.example
Message-ID: <Q6MS@mta.example.com>
Subject: Offers

Offers.

------JMRP--
"""

PLAIN_BOUNCE = b"""From: postmaster@old.example.org
To: RETURN_PATH
Subject: failure notice

Hi. This is the qmail-send program at old.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<henry@old.example.org>:
Sorry, no mailbox here by that name. (#5.1.1)
"""

VACATION = b"""From: henry@old.example.org
To: RETURN_PATH
Subject: Out of office
Auto-Submitted: auto-replied

I am away until Monday.
"""
