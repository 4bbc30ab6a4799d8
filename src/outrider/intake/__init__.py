"""The intake: every message passes here before it is spooled, whatever its source.

See :mod:`outrider.intake.core` for the order of the steps and
:mod:`outrider.intake.pipeline` for checks.
"""

from outrider.intake.core import Accepted, Intake, Rejected
from outrider.intake.pipeline import Check, IntakePipeline
from outrider.intake.sink import SchedulerSink, Sink, SinkUnavailableError
from outrider.intake.submission import MailEnvelope, MailRecipient, Source, Submission
from outrider.intake.verdict import CONTINUE, Action, Verdict, VerdictResult

__all__ = [
    "CONTINUE",
    "Accepted",
    "Action",
    "Check",
    "Intake",
    "IntakePipeline",
    "MailEnvelope",
    "MailRecipient",
    "Rejected",
    "SchedulerSink",
    "Sink",
    "SinkUnavailableError",
    "Source",
    "Submission",
    "Verdict",
    "VerdictResult",
]
