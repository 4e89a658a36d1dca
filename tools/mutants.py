"""Mutation testing with coverage-selected tests: each mutant runs only the tests that execute
its line.

mutmut 2 runs one test command for every mutant; over jaxar that is the whole suite (17
minutes) per mutant. This script asks mutmut for the mutants only, then applies them one at a
time and runs the tests that covered the mutated line (``pytest --cov-context=test``
records which), stopping at the first failure:

    pip install mutmut==2.5.1 pytest-cov
    git clone . /tmp/mut && cd /tmp/mut          # mutants are written into the tree
    pytest -q -n 2 --dist loadfile --cov=jaxar --cov-context=test   # .coverage, 25 min
    python tools/mutants.py --paths jaxar/runner/steps.py,jaxar/objectives.py \\
        [--sample 100 --seed 0 | --ids 5,17] [--timeout 300] [--skip earlier.jsonl]
        [--confirm tests/test_objectives.py] --out mutants.jsonl

Mutants are enumerated by ``mutmut run --runner true`` (which tests nothing), ``--sample N``
draws N of them (fixed ``--seed``), each is applied with ``mutmut apply`` and the file is
restored from git after its run. A line executed only at import (a signature's default, a
module constant) takes the tests of the lines after it up to the next covered ones (the
function body). At most ``--max-tests`` tests run per mutant: those of the module's own test
file first. Statuses: ``killed`` (a test failed or collection broke), ``survived``,
``timeout``, ``no tests`` (no test covered the line). Coverage under-selects for code that
runs traced: JAX caches a jitted function's trace, so the lines it traced count as covered by
the first test that compiled it only, not by the later tests that run the cached program; a
survivor is then rerun against the whole of the ``--confirm`` test files (status ``killed``,
``"confirmed_by"`` set, if they fail). ``--ids`` runs those mutants only (say, to recheck
survivors after adding tests). One JSON line per mutant goes to
``--out`` (with its diff) and a count per status and file is printed. The tree must be a
clean git checkout (the script refuses one with changes to the files it mutates).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time

__all__ = ["main"]


def _git_clean(paths: list[str]) -> None:
    out = subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    if out.strip():
        raise SystemExit(f"expected a clean checkout of {paths}, got changes:\n{out}")


def enumerate_mutants(paths: list[str]) -> list[int]:
    """Every mutant id of ``paths`` (mutmut's cache is rebuilt; nothing is tested)."""
    if os.path.exists(".mutmut-cache"):
        os.remove(".mutmut-cache")
    cmd = ["mutmut", "run", "--paths-to-mutate", ",".join(paths), "--runner", "true"]
    subprocess.run(cmd, capture_output=True, text=True)  # exit code is the survivor count
    with sqlite3.connect(".mutmut-cache") as db:
        return [r[0] for r in db.execute("select id from Mutant order by id")]


def show(mid: int) -> tuple[str, int, str]:
    """``(file, line, diff)`` of mutant ``mid`` (the first removed line of its hunk)."""
    diff = subprocess.run(["mutmut", "show", str(mid)], capture_output=True, text=True).stdout
    m_file = re.search(r"^--- (\S+)", diff, re.M)
    m_hunk = re.search(r"^@@ -(\d+)", diff, re.M)
    if not (m_file and m_hunk):
        return "", 0, diff
    line = int(m_hunk.group(1))
    for body in diff[m_hunk.end() :].splitlines()[1:]:
        if body.startswith("-"):
            break
        if not body.startswith("+"):
            line += 1
    return m_file.group(1), line, diff


class Selector:
    """The tests that executed each line, from a ``--cov-context=test`` coverage file."""

    def __init__(self, coverage_file: str):
        import coverage

        data = coverage.CoverageData(basename=coverage_file)
        data.read()
        self._by_file = {}
        for path in data.measured_files():
            rel = path[path.rfind("/jaxar/") + 1 :] if "/jaxar/" in path else path
            lines = {}
            for line, contexts in data.contexts_by_lineno(path).items():
                tests = {c.rsplit("|", 1)[0] for c in contexts if c}
                lines[line] = tests
            self._by_file[rel] = lines

    def tests(
        self, rel: str, line: int, max_tests: int, slow: tuple[str, ...] = (), prefer=()
    ) -> list[str]:
        lines = self._by_file.get(rel, {})
        found = set(lines.get(line, ()))
        if not found:  # import-time only: the body that follows
            after = sorted(ln for ln in lines if ln > line)
            for ln in after[:40]:
                found |= lines[ln]
                if found and ln > line + 1 and not lines.get(ln + 1):
                    break
        stem = os.path.splitext(os.path.basename(rel))[0]
        own = sorted(t for t in found if any(s in t.split("::")[0] for s in (stem, *prefer)))
        rest = sorted(found - set(own))
        random.Random(line).shuffle(rest)
        rest.sort(key=lambda t: any(s in t for s in slow))  # stable: slow files last
        return (own + rest)[:max_tests]


def string_only(diff: str) -> bool:
    """Whether the mutant only wraps a string literal in ``XX`` (mutmut's string mutation):
    an error message's text, usually, but a dictionary key or a mode name too."""
    old = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return len(old) == len(new) == 1 and "XX" in new[0] and new[0].replace("XX", "") == old[0]


def _pytest(tests: list[str], timeout: int) -> str:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        rc = subprocess.run(cmd, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "timeout"
    return {0: "survived", 5: "no tests"}.get(rc, "killed")


def run_one(
    mid: int, rel: str, tests: list[str], timeout: int, confirm: list[str] = ()
) -> tuple[str, float, bool]:
    """``(status, seconds, whether the --confirm files killed it)`` of mutant ``mid``."""
    subprocess.run(["mutmut", "apply", str(mid)], check=True, capture_output=True)
    t0 = time.perf_counter()
    try:
        status, confirmed = _pytest(tests, timeout), False
        if status == "survived" and confirm:
            again = _pytest(list(confirm), timeout)
            confirmed = again == "killed"
            status = again if again in ("killed", "timeout") else status
    finally:
        subprocess.run(["git", "checkout", "--", rel], check=True)
    return status, time.perf_counter() - t0, confirmed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", required=True, help="comma-separated files to mutate")
    ap.add_argument("--coverage", default=".coverage")
    ap.add_argument("--sample", type=int, default=0, help="0: every mutant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--max-tests", type=int, default=40)
    ap.add_argument(
        "--slow",
        default="test_multihost,test_benchmarks,test_fork,test_reliability,test_configs",
        help="test files run after the others (comma-separated name parts)",
    )
    ap.add_argument(
        "--prefer", default="", help="test files run first, beside the module's own test file"
    )
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        help="a --out file of an earlier run over the same --paths (so the same mutant ids): "
        "its mutants are left out before sampling (repeatable)",
    )
    ap.add_argument("--ids", default="", help="comma-separated mutant ids: these only")
    ap.add_argument(
        "--confirm",
        default="",
        help="comma-separated test files a survivor is rerun against in full (module doc)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"--paths: expected files of this tree, got missing {missing}")
    if not os.path.isfile(args.coverage):
        raise SystemExit(f"--coverage: expected a coverage data file, got {args.coverage!r}")
    if not re.fullmatch(r"(\d+(,\d+)*)?", args.ids):
        raise SystemExit(f"--ids: expected comma-separated mutant ids, got {args.ids!r}")
    confirm = [t for t in args.confirm.split(",") if t]
    absent = [t for t in confirm if not os.path.isfile(t.split("::")[0])]
    if absent:
        raise SystemExit(f"--confirm: expected test files of this tree, got missing {absent}")
    _git_clean(paths)
    os.environ["PYTHONPATH"] = os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")
    selector = Selector(args.coverage)
    slow = tuple(s for s in args.slow.split(",") if s)
    prefer = tuple(s for s in args.prefer.split(",") if s)
    done = set()
    for path in args.skip:
        if not os.path.isfile(path):
            raise SystemExit(f"--skip: expected a --out file of an earlier run, got {path!r}")
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        others = sorted({r["file"] for r in rows if r["file"] and r["file"] not in paths})
        if others:  # ids number the mutants of one set of paths only
            raise SystemExit(f"--skip: expected a run over {paths}, got {path} with {others}")
        done.update(r["id"] for r in rows)
    ids = enumerate_mutants(paths)
    _git_clean(paths)
    ids = [i for i in ids if i not in done]
    if args.ids:
        wanted = [int(i) for i in args.ids.split(",")]
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise SystemExit(f"--ids: expected mutant ids of {paths}, got unknown {unknown}")
        ids = wanted
    elif args.sample:
        ids = sorted(random.Random(args.seed).sample(ids, min(args.sample, len(ids))))
    print(f"{len(ids)} mutants of {paths}", flush=True)
    counts = collections.Counter()
    for mid in ids:
        rel, line, diff = show(mid)
        tests = selector.tests(rel, line, args.max_tests, slow, prefer) if rel else []
        confirmed = False
        if not rel:
            status, secs = "empty record", 0.0
        elif not tests:
            status, secs = "no tests", 0.0
        else:
            status, secs, confirmed = run_one(mid, rel, tests, args.timeout, confirm)
        counts[status, rel] += 1
        row = {"id": mid, "file": rel, "line": line, "status": status, "seconds": round(secs, 1),
               "tests": len(tests), "confirmed_by": confirm if confirmed else [],
               "string_only": string_only(diff), "diff": diff}  # fmt: skip
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        by = " by --confirm" if confirmed else ""
        print(f"{mid} {rel}:{line} {status}{by} ({secs:.0f} s, {len(tests)} tests)", flush=True)
    for (status, rel), n in sorted(counts.items()):
        print(f"{rel}: {status} {n}")


if __name__ == "__main__":
    main()
