"""Config overrides from the command line, as `spacy train` reads them: `--section.key value`.

spaCy's own parser lives in a private module (`spacy.cli._util`); this is the
same convention in a dozen lines the scripts can rely on.
"""

from typing import Any, Dict, Sequence

import srsly


def parse_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """`["--training.max_steps", "300", "--paths.train=x.spacy"]` → `{"training.max_steps": 300, "paths.train": "x.spacy"}`.

    Values are read as JSON where they parse (numbers, `null`, `true`,
    lists), and kept as strings otherwise. A flag with no value is `true`.
    Unlike spaCy, dashes in names are kept: configs/experiments.cfg's sections
    are named `compare-heads` and the like.
    """
    overrides: Dict[str, Any] = {}
    args = list(args)
    while args:
        flag = args.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise ValueError(f"Not a config override: {flag!r} (expected --section.key value)")
        name, equals, value = flag[2:].partition("=")
        if not equals:
            value = args.pop(0) if args and not args[0].startswith("--") else "true"
        overrides[name] = _value(value)
    return overrides


def _value(text: str) -> Any:
    try:
        return srsly.json_loads(text)
    except ValueError:
        return text
