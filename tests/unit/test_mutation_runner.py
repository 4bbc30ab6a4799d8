"""How the mutation runner (tests/mutation/run.py) tells "text" mutants from the rest.

Text mutants change only what a message says (reply text, log lines), never what the
server does; the score table leaves them out, so the classification must not hide a
real behaviour change.
"""

from __future__ import annotations

from tests.mutation.run import _log_arguments_only, _string_tokens_only

METHOD = """
def record(self, queue, until):
    log.warning("%s: source %s disabled until %.0f", queue.key, queue.vmta, until)
    self.ctx.shared("source", queue.key, True, until)
"""


def mutant(old: str, new: str, code: str = METHOD) -> bool:
    assert old in code
    return _log_arguments_only(code, code.replace(old, new))


def test_an_argument_of_a_log_call_replaced_is_text() -> None:
    assert mutant("queue.key, queue.vmta, until)", "None, queue.vmta, until)")
    assert mutant("queue.key, queue.vmta, until)", "queue.vmta, until)")  # one dropped


def test_every_logger_name_and_method_counts() -> None:
    for name in ("log", "logger", "_log"):
        for method in ("debug", "info", "warning", "error", "exception", "critical"):
            code = f"def f(x):\n    {name}.{method}('%s', x)\n    return x\n"
            assert _log_arguments_only(code, code.replace("'%s', x)", "'%s', None)"))
    level = "def f(x):\n    log.log(logging.INFO, 'x=%s', x)\n"
    assert _log_arguments_only(level, level.replace("logging.INFO", "None"))


def test_a_log_call_over_several_lines_is_text() -> None:
    code = """
def record(self, queue, transition, reply):
    log.warning(
        "%s: %s mode (%s%s)", queue.name, transition.reason, f": {reply}" if reply else ""
    )
    return queue
"""
    assert mutant('f": {reply}" if reply else ""', 'f": {reply}" if reply and False else ""', code)


def test_a_change_outside_the_log_call_is_not_text() -> None:
    assert not mutant(
        'self.ctx.shared("source", queue.key, True, until)',
        'self.ctx.shared("source", queue.key, False, until)',
    )
    assert not mutant("(self, queue, until)", "(self, queue, until=None)")


def test_a_call_to_another_object_named_like_a_log_method_is_not_text() -> None:
    code = "def f(self, x):\n    self.audit.info('%s', x)\n    queue.warning(x)\n"
    assert not _log_arguments_only(code, code.replace("'%s', x)", "'%s', None)"))
    assert not _log_arguments_only(code, code.replace("warning(x)", "warning(None)"))


def test_log_arguments_with_a_call_in_them_are_not_text() -> None:
    # the call runs whatever the log level: mutating it can change what the code does
    code = "def f(self, key):\n    log.info('%s', self.pending.pop(key))\n"
    assert not _log_arguments_only(code, code.replace("pop(key)", "pop(None)"))
    walrus = "def f(xs):\n    log.info('%s', (n := len(xs)))\n    return n\n"
    assert not _log_arguments_only(walrus, walrus.replace("len(xs)", "None"))


def test_an_unchanged_or_unparsable_function_is_not_text() -> None:
    assert not _log_arguments_only(METHOD, METHOD)
    assert not _log_arguments_only("def f(:\n", "def f(:\n    log.info(1)\n")


def test_string_literal_changes_stay_text() -> None:
    assert _string_tokens_only(['log.info("enabled %s", key)'], ['log.info("XXenabled %sXX", key)'])
    assert not _string_tokens_only(["x = a + 1"], ["x = a - 1"])
