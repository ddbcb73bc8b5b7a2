"""The library's size rules, checked: modules over 600 lines, functions over 80 lines (``train()`` may reach
100), and project imports inside functions (at most 5 in the whole library).

    python scripts/house_check.py            # one line per breach, exit status 1 if any
    python scripts/house_check.py PATH...    # only these files or folders
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE, MAX_FUNCTION, MAX_TRAIN, MAX_LOCAL_IMPORTS = 600, 80, 100, 5


def _files(args: list[str]) -> list[Path]:
    roots = [Path(a) for a in args] or [REPO / "ssuper_lib"]
    return sorted(f for r in roots for f in ([r] if r.is_file() else r.rglob("*.py")))


def check(files: list[Path]) -> tuple[list[str], int]:
    problems, local_imports = [], 0
    for f in files:
        text = f.read_text()
        rel = f.resolve().relative_to(REPO) if f.resolve().is_relative_to(REPO) else f
        n = len(text.splitlines())
        if n > MAX_MODULE:
            problems.append(f"{rel}: module of {n} lines (at most {MAX_MODULE})")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                limit = MAX_TRAIN if node.name == "train" and rel.name == "loop.py" else MAX_FUNCTION
                if length > limit:
                    problems.append(f"{rel}:{node.lineno}: {node.name}() has {length} lines (at most {limit})")
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and (sub.level > 0 or (sub.module or "").startswith("ssuper_lib")):
                        local_imports += 1
                        problems.append(f"{rel}:{sub.lineno}: project import inside {node.name}()")
    return problems, local_imports


def main(argv: list[str]) -> int:
    problems, local_imports = check(_files(argv))
    for p in problems:
        print(p)
    over = local_imports > MAX_LOCAL_IMPORTS
    print(f"{len(problems)} findings; {local_imports} project imports inside functions (at most {MAX_LOCAL_IMPORTS})")
    return 1 if over or any("import inside" not in p for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
