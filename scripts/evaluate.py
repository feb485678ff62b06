"""Score a trained pipeline on a DocBin: entity P/R/F overall and per type, token accuracy,
and how well its entity probabilities are calibrated."""

import json
from pathlib import Path

import spacy
import typer
from wasabi import msg

from spacy_bert_crf.scoring import calibration_table, evaluate_on, scores_table


def main(
    model: str = typer.Argument(..., help="Pipeline package name or directory"),
    data_path: Path = typer.Argument(..., help="Gold DocBin (.spacy)"),
    output_file: Path = typer.Argument(..., help="JSON file for the scores"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to use, -1 for the CPU"),
):
    """Evaluate MODEL on DATA_PATH; write every score as JSON and print a table."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    scores = evaluate_on(nlp, data_path)
    scores["model"] = str(model)
    scores["data"] = str(data_path)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(json.dumps(scores, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    msg.info(f"{model} on {data_path} ({scores['docs']} docs)")
    print(scores_table(scores))
    if scores.get("ents_calibration"):
        print(calibration_table(scores["ents_calibration"]))
    print(f"Speed: {scores['speed']:.0f} words/s")
    msg.good(f"Wrote {output_file}")


if __name__ == "__main__":
    typer.run(main)
