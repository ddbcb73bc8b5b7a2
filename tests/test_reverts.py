"""The revert patches of ``make check-reverts`` still apply to the tree and name tests that exist.

``make check-reverts`` (scripts/check_reverts.py) is slow: it re-runs the named tests once per patch. This
fast check notices drift in CI: a patch that no longer applies, or that names a test which was renamed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from check_reverts import git_apply, read_patch  # noqa: E402

PATCHES = sorted((REPO / "tests" / "reverts").glob("*.patch"))


def test_there_are_revert_patches():
    assert len(PATCHES) >= 5, "tests/reverts/ should hold one revert patch per fix of docs/differences.md"


DIFFERENCES = REPO / "docs" / "differences.md"


@pytest.mark.parametrize("patch", PATCHES, ids=[p.stem for p in PATCHES])
def test_revert_patch_is_listed_in_docs_differences(patch):
    fix_id = re.match(r"(R8\.\d+[a-z]?|[A-Z]\d+[a-z]?)-", patch.name)
    assert fix_id, f"{patch.name}: a revert patch is named <id>-<what>.patch (R8.1-..., N3b-...)"
    table = re.findall(r"^\|[ \t]*([^|\s]+)[ \t]*\|", DIFFERENCES.read_text(), re.M)
    assert fix_id.group(1) in table, f"{patch.name}: docs/differences.md lists no fix {fix_id.group(1)} in its patch table"


@pytest.mark.parametrize("patch", PATCHES, ids=[p.stem for p in PATCHES])
def test_revert_patch_applies_and_names_existing_tests(patch):
    res = git_apply(patch, REPO, check_only=True)
    assert res.returncode == 0, f"{patch.name} no longer applies to the tree; refresh it: {res.stderr}"
    title, tests = read_patch(patch)
    assert title, f"{patch.name}: the first header line should say which fix it reverts"
    assert tests, f"{patch.name}: name the tests expected to fail with '# expect-fail: tests/FILE.py::TEST'"
    for test in tests:
        file, _, name = test.partition("::")
        name = name.split("[")[0]
        src = REPO / file
        assert src.is_file(), f"{patch.name}: {file} does not exist"
        assert re.search(rf"^\s*def {re.escape(name)}\(", src.read_text(), re.M), f"{patch.name}: no test {name} in {file}"


def test_git_is_available():
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0
