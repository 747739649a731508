"""pyproject.toml: every console command resolves to a callable that runs a module's `main`, and every
`python -m colossal_lang...` tool has a console command."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPTS = PYPROJECT["project"]["scripts"]


def entry_point(spec: str):
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def runnable_modules():
    """Modules of the package that end in `if __name__ == "__main__":` (what `python -m` runs)."""
    found = set()
    for path in sorted((REPO / "colossal_lang").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                found.add(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_command_resolves_to_a_module_main(name):
    run = entry_point(SCRIPTS[name])
    assert callable(run)
    assert callable(importlib.import_module(run.module_name).main)


def test_every_python_m_tool_has_a_console_command():
    commanded = {entry_point(spec).module_name for spec in SCRIPTS.values()}
    assert runnable_modules() - commanded == set()
    assert "colossal_lang.inference" in commanded  # inference_example.py's module (no __main__ of its own)


def test_a_console_command_runs_with_the_cli_conventions(monkeypatch, capsys, tmp_path):
    run = entry_point(SCRIPTS["colossal-lang-perplexity"])
    monkeypatch.setattr(sys, "argv", ["colossal-lang-perplexity", "--help"])
    with pytest.raises(SystemExit) as caught:
        run()
    assert caught.value.code == 0 and "--model_path" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["colossal-lang-perplexity", "--model_path", str(tmp_path / "none"),
                                      "--data", str(REPO / "data" / "heldout")])
    with pytest.raises(SystemExit) as caught:
        run()
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none'}: no such model folder\n"


def test_the_package_and_its_dependencies_are_declared():
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["colossal_lang*"]
    for listed in PYPROJECT["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]:
        assert (REPO / listed).is_file()
