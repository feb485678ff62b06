"""Command-line config overrides, read as `spacy train` reads them."""

import pytest

from spacy_bert_crf.lab.overrides import parse_overrides


def test_values_are_json_where_they_parse_and_strings_otherwise():
    args = [
        "--training.max_steps",
        "300",
        "--paths.train=x.spacy",
        "--paths.vectors",
        "null",
        "--a.flag",
        "--b.list",
        "[1, 2]",
        "--c.name",
        "abc",
    ]
    assert parse_overrides(args) == {
        "training.max_steps": 300,
        "paths.train": "x.spacy",
        "paths.vectors": None,
        "a.flag": True,
        "b.list": [1, 2],
        "c.name": "abc",
    }
    assert parse_overrides([]) == {}


def test_dashed_section_names_are_kept():
    assert parse_overrides(["--compare-heads.crf.config", "x.cfg"]) == {"compare-heads.crf.config": "x.cfg"}


@pytest.mark.parametrize("args", [["training.max_steps", "3"], ["--max_steps", "3"], ["-x.y", "1"]])
def test_what_is_not_an_override_is_named(args):
    with pytest.raises(ValueError, match=f"Not a config override: {args[0]!r}"):
        parse_overrides(args)
