"""Predicted entities as a displaCy page, and a check that a real browser shows them.

`render_entities` writes the page; `check_renders_in_chromium` opens it in
headless Chromium, counts the entity marks in the DOM the browser built and
takes a screenshot. The count proves that the page parses and every entity
reaches the screen, which reading the HTML we wrote ourselves cannot prove.
"""

import html
import re
import shutil
import subprocess
import tempfile
import warnings
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

from matplotlib.image import imread
from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc

from ..formats import PathLike

# displaCy's own colours for PERSON, LOC, ORG and DATE (T is time), so that the
# page looks like the ones spaCy users know; any other label gets displaCy's grey.
LABEL_COLORS = {"PER": "#aa9cfc", "LOC": "#ff9561", "ORG": "#7aecec", "T": "#bfe1d9"}
DEFAULT_COLOR = "#ddd"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrowserError(RuntimeError):
    """Chromium failed, timed out, or rendered nothing."""


class BrowserNotFound(BrowserError):
    """No Chromium binary to run."""


def render_entities(docs: Sequence[Doc], path: PathLike, title: str) -> int:
    """Write `docs` as a standalone UTF-8 displaCy page; return the number of entities."""
    labels = sorted({ent.label_ for doc in docs for ent in doc.ents})
    colors = {label: LABEL_COLORS.get(label, DEFAULT_COLOR) for label in labels}
    with warnings.catch_warnings():
        # displaCy warns (W006) for each Doc without entities: a normal prediction here.
        warnings.filterwarnings("ignore", message=r"\[W006\]")
        page = displacy.render(docs, style="ent", page=True, jupyter=False, options={"colors": colors})
    # displaCy's page template has neither a charset nor our title: without the
    # charset a browser opening the file may guess a legacy encoding for the Chinese.
    # The title goes in through a function, so that a backslash in it stays text.
    page = page.replace("<head>", '<head>\n        <meta charset="utf-8">', 1)
    page = re.sub(r"<title>.*?</title>", lambda _: f"<title>{html.escape(title)}</title>", page, count=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return sum(len(doc.ents) for doc in docs)


def predict_sample(nlp: Language, texts: Iterable[str], n: int = 50) -> List[Doc]:
    """Run the first `n` non-empty texts through `nlp.pipe`."""
    sample = []
    for text in texts:
        if len(sample) == n:
            break
        if text:
            sample.append(text)
    return list(nlp.pipe(sample))


def find_chromium(chromium: Optional[str] = None) -> str:
    """The path of `chromium` (a name or path), or else of the first Chromium on PATH."""
    candidates = (chromium,) if chromium else CHROMIUM_NAMES
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrowserNotFound(f"No Chromium binary found (looked for {', '.join(candidates)})")


def check_renders_in_chromium(
    html_path: PathLike, screenshot_path: PathLike, chromium: Optional[str] = None, timeout: float = 120
) -> Dict[str, Union[str, int]]:
    """Open a page in headless Chromium: count its entity marks and take a non-blank screenshot."""
    browser = find_chromium(chromium)
    url = Path(html_path).resolve().as_uri()
    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    # A screenshot left by an earlier run must not pass for this run's.
    screenshot_path.unlink(missing_ok=True)
    version = _run_chromium(browser, ["--version"], timeout).strip()
    dom = _run_chromium(browser, ["--dump-dom", url], timeout)
    _run_chromium(browser, [f"--screenshot={screenshot_path.resolve()}", "--window-size=1200,2000", url], timeout)
    _check_screenshot(screenshot_path)
    return {
        "browser": version,
        "marks": count_entity_marks(dom),
        "screenshot": str(screenshot_path),
        "screenshot_bytes": screenshot_path.stat().st_size,
    }


def count_entity_marks(dom: str) -> int:
    """The number of displaCy entity elements (`<mark class="entity">`) in an HTML document."""
    counter = _EntityMarkCounter()
    counter.feed(dom)
    counter.close()
    return counter.count


class _EntityMarkCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.count = 0

    def handle_starttag(self, tag, attrs):
        if tag == "mark" and "entity" in (dict(attrs).get("class") or "").split():
            self.count += 1


def _run_chromium(browser: str, args: List[str], timeout: float) -> str:
    """Run headless Chromium once and return its stdout; raise BrowserError if it fails or hangs."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # --no-sandbox: Chromium refuses to start as root (as in containers) with
        # its sandbox on. A fresh profile keeps runs from sharing caches and locks.
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args]
        try:
            result = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"{browser} did not finish within {timeout} s: {' '.join(command)}") from None
    if result.returncode != 0:
        raise BrowserError(
            f"{browser} exited with status {result.returncode}: {' '.join(command)}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def _check_screenshot(path: Path) -> None:
    """Raise BrowserError unless `path` is a PNG with more than one colour in it."""
    if not path.exists() or _read_head(path, len(PNG_SIGNATURE)) != PNG_SIGNATURE:
        raise BrowserError(f"Chromium wrote no PNG screenshot to {path}")
    if imread(path).std() == 0:
        raise BrowserError(f"The screenshot {path} is blank: the page rendered nothing")


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)
