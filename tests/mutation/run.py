"""Mutation testing, module by module, each against its own unit tests (``make mutate``).

    .venv/bin/python -m tests.mutation.run                       # every module
    .venv/bin/python -m tests.mutation.run spool/codec.py policy/rate.py
    .venv/bin/python -m tests.mutation.run --minutes 5 smtp/server.py   # sample a big one

mutmut reads one ``[tool.mutmut]`` table from the pyproject.toml in its working directory
and cannot map a module to its tests, so each module runs in its own directory,
``.mutmut/<module>/``, holding symlinks to src/ and tests/ and a copy of pyproject.toml
whose ``[tool.mutmut]`` is the shared one plus ``only_mutate`` (the module) and
``pytest_add_cli_args_test_selection`` (its tests, from ``[tool.outrider-mutate.modules]``).
Results stay there: ``cd .mutmut/spool-codec && ../../.venv/bin/mutmut show <name>``.

The table counts mutants killed (a test failed or timed out) and survived; mutants no test
reaches count as survived. "text" mutants change only string literals (reply text,
header-name case, log messages) or only the arguments of a logging call (``log.info(...)``,
``logger.warning(...)``, ...: what a log line says, never what the server does): the last
column leaves them out. ``--minutes`` stops a
module after that long; mutmut checks the cheapest mutants first, so a stopped run is a
sample biased towards fast tests, marked "sampled" in the table.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import tokenize
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".mutmut"
KILLED = {"killed", "timeout", "caught by type check", "segfault"}
NOT_RUN = {"not checked", "skipped", "check was interrupted by user"}
LOGGERS = {"log", "logger", "_log"}  # module-level logger names used in src/outrider
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


@dataclass
class Score:
    module: str
    mutants: int
    killed: int
    survived: int
    text: int
    text_killed: int
    sampled: bool

    @property
    def checked(self) -> int:
        return self.killed + self.survived

    def score(self) -> str:
        return _pct(self.killed, self.checked)

    def score_without_text(self) -> str:
        return _pct(self.killed - self.text_killed, self.checked - self.text)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _settings() -> tuple[dict[str, object], dict[str, list[str]]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return doc["tool"]["mutmut"], doc["tool"]["outrider-mutate"]["modules"]


def _toml_value(value: object) -> str:
    return json.dumps(value)  # strings, lists of strings, numbers and booleans


def _pyproject_for(module: str, tests: list[str], shared: dict[str, object]) -> str:
    """The project's pyproject.toml with a [tool.mutmut] table for this module only."""
    lines, skipping = [], False
    for line in (ROOT / "pyproject.toml").read_text("utf-8").splitlines():
        if line.startswith("["):
            skipping = line.strip() in ("[tool.mutmut]", "[tool.outrider-mutate.modules]")
        if not skipping:
            lines.append(line)
    table = dict(shared)
    table["only_mutate"] = [f"src/outrider/{module}"]
    table["pytest_add_cli_args_test_selection"] = tests
    lines.append("\n[tool.mutmut]")
    lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _workdir(module: str) -> Path:
    return WORK / module.removesuffix(".py").replace("/", "-")


def run_module(module: str, tests: list[str], shared: dict[str, object], minutes: float) -> bool:
    """Run mutmut on one module; returns whether it was stopped by the time limit."""
    work = _workdir(module)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in ("src", "tests"):
        (work / name).symlink_to(ROOT / name)
    (work / "pyproject.toml").write_text(_pyproject_for(module, tests, shared), "utf-8")
    mutmut = Path(sys.executable).with_name("mutmut")
    jobs = os.environ.get("MUTATE_JOBS", "2")
    print(f"== {module}: tests {' '.join(tests)}", flush=True)
    log = (work / "mutmut.log").open("w")
    proc = subprocess.Popen(
        [str(mutmut), "run", "--max-children", jobs],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=minutes * 60 if minutes else None)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return True
    finally:
        log.close()


def _string_tokens_only(before: list[str], after: list[str]) -> bool:
    """Whether two code fragments differ in string literals only."""

    def tokens(lines: list[str]) -> list[tuple[int, str]] | None:
        try:
            toks = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
            return [(t.type, t.string) for t in toks if t.type != tokenize.COMMENT]
        except (tokenize.TokenError, IndentationError, SyntaxError):
            return None

    a, b = tokens([line.strip() for line in before]), tokens([line.strip() for line in after])
    if a is None or b is None or len(a) != len(b):
        return False
    differs = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    return bool(differs) and all(_text_token(x) and _text_token(y) for x, y in differs)


def _text_token(token: tuple[int, str]) -> bool:
    # a string literal, or the None mutmut puts in place of an exception's message
    return token[0] == tokenize.STRING or token == (tokenize.NAME, "None")


def _is_log_call(node: ast.AST) -> bool:
    """``log.info(...)`` and the like: a logging method called on a logger's name."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in LOG_METHODS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in LOGGERS
    )


def _side_effect_free(nodes: list[ast.expr]) -> bool:
    # a call, await or assignment inside a log call's arguments runs whatever the level:
    # mutating those arguments can change behaviour, so such a mutant is not "text"
    unsafe = (ast.Call, ast.Await, ast.NamedExpr, ast.Yield, ast.YieldFrom)
    return not any(isinstance(n, unsafe) for arg in nodes for n in ast.walk(arg))


def _without_log_arguments(code: str) -> str | None:
    """The code's AST dump with every logging call's arguments removed (None if the code
    does not parse, or a logging call's arguments could have side effects)."""
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if _is_log_call(node):
            assert isinstance(node, ast.Call)
            parts = [*node.args, *(k.value for k in node.keywords)]
            if not _side_effect_free(parts):
                return None
            node.args, node.keywords = [], []
    return ast.dump(tree)


def _log_arguments_only(before: str, after: str) -> bool:
    """Whether two versions of a function differ only in the arguments of logging calls."""
    if before == after:
        return False
    a, b = _without_log_arguments(before), _without_log_arguments(after)
    return a is not None and a == b


def _function_sources(name: str, path: Path) -> tuple[str, str]:
    """The original and the mutated source of the function a mutant changes."""
    import libcst as cst
    from mutmut.mutation.diff_apply import (
        read_functions_from_index,
        read_mutant_function,
        read_mutants_module,
        read_original_function,
    )

    functions = read_functions_from_index(name, path)
    if functions is None:
        module = read_mutants_module(path)
        functions = (read_original_function(module, name), read_mutant_function(module, name))
    orig, mutant = (cst.Module([f]).code for f in functions)
    return orig, mutant


def collect() -> None:
    """Print {mutant: [status, text_only]} as JSON; runs inside a module's work dir."""
    from mutmut.configuration import config  # noqa: F401 - loads this dir's settings
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    out: dict[str, list[object]] = {}
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, code in data.exit_code_by_key.items():
            diff = get_diff_for_mutant(name, path=path).splitlines()
            before = [x[1:] for x in diff if x.startswith("-") and not x.startswith("---")]
            after = [x[1:] for x in diff if x.startswith("+") and not x.startswith("+++")]
            text = _string_tokens_only(before, after) or _log_arguments_only(
                *_function_sources(name, path)
            )
            out[name] = [status_by_exit_code[code], text]
    print(json.dumps(out))


def score_module(module: str, sampled: bool) -> tuple[Score, list[str]]:
    work = _workdir(module)
    done = subprocess.run(
        [sys.executable, "-m", "tests.mutation.run", "--collect"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    results: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    checked = {k: v for k, v in results.items() if v[0] not in NOT_RUN}
    killed = [k for k, v in checked.items() if v[0] in KILLED]
    survivors = sorted(k for k, v in checked.items() if v[0] not in KILLED)
    text = [k for k, v in checked.items() if v[1]]
    score = Score(
        module=module,
        mutants=len(results),
        killed=len(killed),
        survived=len(survivors),
        text=len(text),
        text_killed=len(set(text) & set(killed)),
        sampled=sampled or len(checked) < len(results),
    )
    return score, [f"{name}{'  (text)' if checked[name][1] else ''}" for name in survivors]


def print_table(scores: list[Score]) -> None:
    print("\n| module | mutants | checked | killed | survived | score | score without text |")
    print("|---|---|---|---|---|---|---|")
    for s in scores:
        mark = " (sampled)" if s.sampled else ""
        print(
            f"| {s.module}{mark} | {s.mutants} | {s.checked} | {s.killed} | {s.survived} "
            f"| {s.score()} | {s.score_without_text()} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="paths under src/outrider (default: all)")
    parser.add_argument("--minutes", type=float, default=0, help="stop each module after this")
    parser.add_argument("--report-only", action="store_true", help="score the last runs")
    parser.add_argument("--collect", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collect:
        collect()
        return 0
    shared, modules = _settings()
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        parser.error(f"not in [tool.outrider-mutate.modules]: {' '.join(unknown)}")
    chosen = args.modules or list(modules)
    scores = []
    for module in chosen:
        sampled = False
        if not args.report_only:
            sampled = run_module(module, modules[module], shared, args.minutes)
        score, survivors = score_module(module, sampled)
        scores.append(score)
        print(f"-- {module}: {score.killed}/{score.checked} killed; survivors:")
        for line in survivors:
            print(f"   {line}")
    print_table(scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
