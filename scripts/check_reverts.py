"""Revert each documented fix in a scratch copy of the kit and check that its tests notice.

Every fix listed in docs/differences.md ("Differences from the original code") has a patch
``tests/reverts/<id>-<what>.patch`` that puts the original's behaviour back (a few lines). The lines before
the diff name the tests that must then fail::

    # R8.1: the local discriminator of the global trainers is zeroed instead of stepped
    # expect-fail: tests/test_train.py::test_every_discriminator_steps

For each patch this script copies the tracked files of the working tree to a temporary folder, applies the
patch there, runs the named tests with ``PYTHONPATH`` set to the copy (so the copy's ``ssuper_lib`` is the
one imported), and prints one line: ``caught`` when every named test fails, ``NOT caught`` otherwise (or
``does not apply`` when the patch no longer matches the code). Exit status 1 unless every fix is caught.

    python scripts/check_reverts.py                 # all patches
    python scripts/check_reverts.py R8.1 R8.2       # patches whose name starts with these ids
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REVERTS = REPO / "tests" / "reverts"
EXPECT = re.compile(r"^#\s*expect-fail:\s*(\S+)\s*$")


def read_patch(path: Path) -> tuple[str, list[str]]:
    """(one-line description, tests expected to fail) from the patch's header."""
    title, tests = "", []
    for line in path.read_text().splitlines():
        if line.startswith(("diff ", "--- ")):
            break
        m = EXPECT.match(line)
        if m:
            tests.append(m.group(1))
        elif line.startswith("#") and not title:
            title = line.lstrip("# ").strip()
    return title, tests


def copy_tracked(dest: Path) -> None:
    """Copy the tracked files of the working tree (as they are now, edits included) to ``dest``."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in out.decode().split("\0"):
        if not rel:
            continue
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree
            continue
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def git_apply(patch: Path, cwd: Path, check_only: bool = False) -> subprocess.CompletedProcess:
    args = ["git", "apply", "--whitespace=nowarn"] + (["--check"] if check_only else []) + [str(patch)]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def python_of_tree() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def check(patch: Path, python: str, timeout: int) -> tuple[str, str]:
    """(status, detail) of one revert patch: caught | NOT caught | does not apply | no tests named."""
    _, tests = read_patch(patch)
    if not tests:
        return "NOT caught", "the patch names no test (# expect-fail: ...)"
    with tempfile.TemporaryDirectory(prefix="ssuper-revert-") as tmp:
        tree = Path(tmp) / "kit"
        copy_tracked(tree)
        applied = git_apply(patch, tree)
        if applied.returncode != 0:
            return "does not apply", applied.stderr.strip().splitlines()[0] if applied.stderr.strip() else ""
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   PYTHONDONTWRITEBYTECODE="1")
        survivors = []
        for test in tests:
            try:
                run = subprocess.run([python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test],
                                     cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
                rc = run.returncode
            except subprocess.TimeoutExpired:
                rc = 1  # a revert that hangs a test is noticed too
            if rc in (2, 3, 4, 5):  # collection error / internal error / usage error / no test: not a failing test
                return "NOT caught", f"{test}: pytest exit {rc} (broken patch or stale test name), not a test failure"
            if rc == 0:
                survivors.append(test)
        if survivors:
            return "NOT caught", "still passing: " + ", ".join(survivors)
        return "caught", f"{len(tests)} test(s) fail"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ids", nargs="*", help="only the patches whose file name starts with one of these")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    parser.add_argument("--baseline", action="store_true", help="first check that the named tests pass unpatched")
    parser.add_argument("--baseline-only", action="store_true", help="only that check")
    args = parser.parse_args(argv)
    patches = sorted(REVERTS.glob("*.patch"))
    if args.ids:
        patches = [p for p in patches if any(p.name.startswith(i) for i in args.ids)]
    if not patches:
        print(f"no patches in {REVERTS}")
        return 1
    python = python_of_tree()
    if args.baseline or args.baseline_only:  # the named tests must pass on the unpatched tree, or "caught" means nothing
        tests = sorted({t for p in patches for t in read_patch(p)[1]})
        with tempfile.TemporaryDirectory(prefix="ssuper-revert-") as tmp:
            tree = Path(tmp) / "kit"
            copy_tracked(tree)
            env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            run = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=tree, env=env,
                                 capture_output=True, text=True)
        print(f"baseline: {len(tests)} named tests on the unpatched tree: " + ("pass" if run.returncode == 0 else "FAIL"))
        if run.returncode != 0:
            print(run.stdout[-3000:])
            return 1
        if args.baseline_only:
            return 0
    width = max(len(p.stem) for p in patches)
    caught = 0
    for patch in patches:
        t0 = time.time()
        title, _ = read_patch(patch)
        status, detail = check(patch, python, args.timeout)
        caught += status == "caught"
        print(f"{patch.stem:<{width}}  {status:<14} {time.time() - t0:6.1f}s  {title}" + ("" if status == "caught" else f"  [{detail}]"),
              flush=True)
    print(f"{caught}/{len(patches)} reverted fixes caught by their tests")
    return 0 if caught == len(patches) else 1


if __name__ == "__main__":
    sys.exit(main())
