"""The library keeps the shape docs/design.md promises: modules under 600 lines, functions under 80 (the
training loop's ``train()`` under 100), project imports at the top of modules (at most 5 inside functions)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _house_check():
    spec = importlib.util.spec_from_file_location("house_check", REPO / "scripts" / "house_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_library_keeps_its_size_rules():
    hc = _house_check()
    problems, local_imports = hc.check(hc._files([]))
    breaches = [p for p in problems if "import inside" not in p]
    assert not breaches, "modules or functions over the size rules:\n" + "\n".join(breaches)
    assert local_imports <= hc.MAX_LOCAL_IMPORTS, "project imports inside functions:\n" + "\n".join(problems)


def test_the_check_sees_a_long_function(tmp_path):
    hc = _house_check()
    src = tmp_path / "long.py"
    src.write_text("def f():\n" + "    x = 1\n" * 90 + "\n\ndef g():\n    from .config import load_config\n")
    problems, local_imports = hc.check([src])
    assert any("f() has 91 lines" in p for p in problems), problems
    assert local_imports == 1, problems
