"""The package's layering, read from the source with `ast`: stages import downstream only.

    io ← tokenizer ← model ← data ← training ← evaluation (and inference, beside evaluation)

`colossal_lang.errors`, `colossal_lang.cli` and `colossal_lang.cli_flags` sit at the bottom with io: every
stage uses them and they use no stage. Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Group -> layer: a module may import its own group and the groups on lower layers.
LAYERS = {"io": 0, "tokenizer": 1, "model": 2, "data": 3, "training": 4, "evaluation": 5, "inference": 5}
BOTTOM_MODULES = {"errors", "cli", "cli_flags"}  # top-level helpers, on the io layer


def group_of(module: str):
    """'tokenizer' for colossal_lang.tokenizer.load, 'io' for colossal_lang.errors; None outside the layers
    (other packages, and colossal_lang.testing: test support, free to import the product)."""
    parts = module.split(".")
    if parts[0] != "colossal_lang":
        return None
    if len(parts) == 1 or parts[1] in BOTTOM_MODULES:
        return "io"
    return parts[1] if parts[1] in LAYERS else None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path):
    """(line, module) of every import in `path`; relative imports resolved, `from colossal_lang import x` as x."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base == "colossal_lang":
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base


def layering_violations(root: Path):
    """'file:line: group imports module' for each import of a group on the same or a higher layer."""
    found = []
    for path in sorted((root / "colossal_lang").rglob("*.py")):
        source = group_of(module_name(path, root))
        if source is None:
            continue
        for line, target in imported_modules(path, root):
            target_group = group_of(target)
            if target_group not in (None, source) and LAYERS[target_group] >= LAYERS[source]:
                found.append(f"{path.relative_to(root)}:{line}: {source} imports {target}")
    return found


def test_stages_import_downstream_only():
    assert layering_violations(REPO) == []


def test_the_layering_check_catches_upstream_imports(tmp_path):
    package = tmp_path / "colossal_lang"
    for folder in ("tokenizer", "evaluation", "testing"):
        (package / folder).mkdir(parents=True)
    (package / "tokenizer" / "bad.py").write_text("def f():\n    from colossal_lang.data.records import file_digest\n")
    (package / "evaluation" / "bad.py").write_text("from ..inference import generate\nfrom ..io import jsonl\n")
    (package / "testing" / "fixtures.py").write_text("from colossal_lang.training import loop\n")
    (package / "errors.py").write_text("from colossal_lang import training\n")
    assert layering_violations(tmp_path) == [
        "colossal_lang/errors.py:1: io imports colossal_lang.training",
        "colossal_lang/evaluation/bad.py:1: evaluation imports colossal_lang.inference",
        "colossal_lang/tokenizer/bad.py:2: tokenizer imports colossal_lang.data.records",
    ]


@pytest.mark.parametrize("old_module", ["colossal_lang.data.jsonl", "colossal_lang.atomic_folder",
                                        "colossal_lang.evaluation.loading", "colossal_lang.model.loading",
                                        "colossal_lang.model.slicing"])
def test_moved_helpers_have_one_home(old_module):
    """The helpers now in colossal_lang.io (and the test-only slicing, now in colossal_lang.testing) left no
    copy behind (a merge could bring one back), and nothing imports them from the old place."""
    assert not (REPO / Path(*old_module.split("."))).with_suffix(".py").exists()
    users = [f"{path.relative_to(REPO)}:{line}" for folder in ("colossal_lang", "tests", "benchmarks")
             for path in sorted((REPO / folder).rglob("*.py"))
             for line, target in imported_modules(path, REPO) if target == old_module]
    assert users == []


SHARED_HELPERS = ("iter_jsonl", "read_text_lines", "list_jsonl_files", "load_hf_tokenizer", "load_base_tokenizer_json",
                  "load_causal_lm", "load_model_and_tokenizer", "check_model_folder", "check_output_folder",
                  "staged_folder", "resolve_device", "resolve_dtype", "first_line")


def test_each_shared_helper_is_defined_once_in_io():
    definitions = {}
    for path in sorted((REPO / "colossal_lang").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in SHARED_HELPERS:
                definitions.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    assert sorted(definitions) == sorted(SHARED_HELPERS)
    for name, places in definitions.items():
        assert len(places) == 1 and places[0].startswith("colossal_lang/io/"), (name, places)
