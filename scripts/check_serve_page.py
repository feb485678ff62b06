"""Serve a pipeline, tag a sentence on its page in headless Chromium, and keep a screenshot
(spacy_bert_crf.lab.page_check)."""

import json
from pathlib import Path

import typer
from wasabi import msg

from spacy_bert_crf.lab.load_test import ServerProcess
from spacy_bert_crf.lab.page_check import tag_in_browser
from spacy_bert_crf.lab.serving import ServeSettings, pipeline_path
from spacy_bert_crf.lab.visualize import BrowserError

SENTENCE = "国务院总理李克强10日在北京会见了来访的联合国秘书长古特雷斯。"


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    screenshot: Path = typer.Argument(..., help="Where the PNG goes, e.g. docs/figures/serve_page.png"),
    text: str = typer.Option(SENTENCE, "--text", help="What to type into the page"),
):
    """Print the entity marks Chromium shows for TEXT, as JSON, and save the page as SCREENSHOT."""
    try:
        pipeline_path(model)
        with ServerProcess(model, ServeSettings(workers=1)) as server:
            shown = tag_in_browser(server.url + "/", text, screenshot=screenshot)
    except (OSError, BrowserError) as error:
        msg.fail(str(error), exits=1)
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    msg.good(f"{len(shown['marks'])} entity marks in Chromium; screenshot: {screenshot}")


if __name__ == "__main__":
    typer.run(main)
