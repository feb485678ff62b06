"""The runtime that spacy.load needs stays apart from the lab that builds on it."""

import ast
import json
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "components" / "spacy_bert_crf"


def imported_modules(path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            names.add(prefix + (node.module or ""))
    return names


def test_no_runtime_module_imports_the_lab_or_its_dependencies():
    lab_dependencies = {"matplotlib", "tqdm", "typer", "gensim"}
    runtime = sorted(PACKAGE.glob("*.py"))
    assert {path.stem for path in runtime} >= {"pipe", "architectures", "char_encoder", "crf", "schemes", "scoring"}
    for path in runtime:
        for name in imported_modules(path):
            assert not name.lstrip(".").startswith("lab") and ".lab" not in name, (path.name, name)
            assert name.split(".")[0] not in lab_dependencies, (path.name, name)


def loaded_modules(code: str) -> list:
    result = subprocess.run(
        [sys.executable, "-c", f"{code}; import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_importing_the_package_loads_no_lab_module():
    modules = loaded_modules("import spacy_bert_crf; spacy_bert_crf.BertCrfNer")
    assert "spacy_bert_crf.pipe" in modules
    assert not [name for name in modules if name.startswith("spacy_bert_crf.lab")]
    assert "matplotlib" not in modules and "gensim" not in modules


def test_reading_data_formats_loads_neither_the_pipe_nor_transformers():
    """What `convert` imports: spaCy finds the pipe through its entry points, so the package's
    `__init__` imports nothing, and a data format needs no model code."""
    modules = loaded_modules("import spacy_bert_crf.formats")
    assert "spacy_bert_crf.formats" in modules
    assert "spacy_bert_crf.pipe" not in modules and "transformers" not in modules


def test_the_pipe_leaves_torch_to_the_head_adapter():
    assert "torch" not in {name.split(".")[0] for name in imported_modules(PACKAGE / "pipe.py")}
