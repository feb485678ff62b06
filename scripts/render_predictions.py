"""Show a pipeline's entities on the first sentences of a text file as a displaCy page."""

import json
from pathlib import Path
from typing import NoReturn, Optional

import spacy
import typer
from wasabi import msg

from spacy_bert_crf.formats import read_text
from spacy_bert_crf.lab.visualize import (
    BrowserError,
    BrowserNotFound,
    check_renders_in_chromium,
    find_chromium,
    predict_sample,
    render_entities,
)


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    text_file: Path = typer.Argument(
        ..., help="One sentence a line: characters separated by spaces, or plain text (.gz ok)"
    ),
    output_html: Path = typer.Argument(..., help="The HTML page to write"),
    n: int = typer.Option(50, "--n", help="How many non-empty sentences to show"),
    screenshot: Optional[Path] = typer.Option(
        None, "--screenshot", help="The check's PNG [default: OUTPUT_HTML with .png]"
    ),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Check in headless Chromium that every entity is shown"
    ),
):
    """Predict the first N sentences of TEXT_FILE and write their entities to OUTPUT_HTML."""
    browser = None
    if check:
        # Look for the browser first: a missing one should not cost a prediction run.
        try:
            browser = find_chromium()
        except BrowserNotFound as error:
            fail(f"{error}. Install Chromium (Debian: apt-get install chromium) or pass --no-check.")
    nlp = spacy.load(model)
    token_lines, _ = read_text(text_file)
    # The pipeline's tokenizer splits Chinese into characters, so the joined
    # tokens are tokenised as scripts/predict.py tags them.
    docs = predict_sample(nlp, ("".join(tokens) for tokens in token_lines), n)
    entities = render_entities(docs, output_html, title=f"{model}: {len(docs)} sentences of {text_file.name}")
    msg.good(f"Wrote {output_html}: {len(docs)} sentences, {entities} entities")
    if not check:
        return
    try:
        result = check_renders_in_chromium(output_html, screenshot or output_html.with_suffix(".png"), browser)
    except BrowserError as error:
        fail(f"Chromium check failed: {error}")
    result = {"entities": entities, **result}
    summary = json.dumps(result, ensure_ascii=False, indent=2)
    print(summary)
    output_html.with_suffix(".check.json").write_text(summary + "\n", encoding="utf-8")
    if result["marks"] < entities:
        fail(
            f"Chromium shows {result['marks']} entity marks, but {entities} entities were predicted: see {result['screenshot']}"
        )


def fail(message: str) -> NoReturn:
    """Print the message to stderr and exit with status 1."""
    typer.echo(f"✘ {message}", err=True)
    raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
