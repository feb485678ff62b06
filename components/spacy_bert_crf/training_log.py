"""A training logger that keeps spaCy's console table and writes a JSONL log to plot.

spaCy's `ConsoleLogger.v3` can write JSONL too, but without the wall time or
the per-type scores, and it stops logging when the file exists, so a rerun of
`spacy train` would keep the previous run's curves. This logger writes one
line per evaluation:

    {"step", "epoch", "seconds", "words", "losses", "scores", "score"}

`seconds` is wall time since training started; `losses` maps each trained
component to its mean loss per update since the previous evaluation (spaCy
hands over the sum, which depends on the evaluation frequency); `scores` holds
every score the pipeline's scorers return, as fractions in [0, 1]. At the
end of the run it says how many training tokens had no gold tag and were
trained as `O`, a count the pipe's one warning at the start cannot give.
"""

import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from spacy import Language, registry
from spacy.training.loggers import console_logger_v3

from .formats import read_lines

LOG_RECORD_KEYS = ("step", "losses", "scores")
LogStep = Callable[[Optional[Dict[str, Any]]], None]


@registry.loggers("spacy_bert_crf.JSONLLogger.v1")
def make_jsonl_logger(
    path: Union[str, Path], progress_bar: Optional[str] = "eval", console_output: bool = True
) -> Callable[[Language, IO, IO], Tuple[LogStep, Callable[[], None]]]:
    """spaCy's console logger, plus a JSONL line at `path` for every evaluation."""
    console = console_logger_v3(progress_bar=progress_bar, console_output=console_output)

    def setup(nlp: Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr):
        console_step, console_finalize = console(nlp, stdout, stderr)
        log_path = Path(path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        stream = log_path.open("w", encoding="utf-8")
        started = time.perf_counter()
        previous_step = -1

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            nonlocal previous_step
            console_step(info)
            if info is None:
                return
            record = evaluation_record(info, time.perf_counter() - started, info["step"] - previous_step)
            previous_step = info["step"]
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            # Flushed at once, so a run that is still going can be plotted.
            stream.flush()

        def finalize() -> None:
            console_finalize()
            stream.close()
            for line in missing_gold_report(nlp):
                stderr.write(line + "\n")

        return log_step, finalize

    return setup


def missing_gold_report(nlp: Language) -> List[str]:
    """A line for each pipe that trained tokens without a gold tag as `O`, with their count."""
    return [
        f"'{name}': {pipe.tokens_without_gold:,} training tokens had no gold entity tag and were trained as 'O'"
        for name, pipe in nlp.pipeline
        if getattr(pipe, "tokens_without_gold", 0)
    ]


def evaluation_record(info: Dict[str, Any], seconds: float, updates: int) -> Dict[str, Any]:
    """One log line from the `info` spaCy's training loop passes at an evaluation."""
    return {
        "step": info["step"],
        "epoch": info["epoch"],
        "seconds": round(seconds, 3),
        "words": info["words"],
        "losses": {name: float(loss) / max(updates, 1) for name, loss in info["losses"].items()},
        "scores": _plain(info["other_scores"]),
        "score": float(info["score"]),
    }


def _plain(value: Any) -> Any:
    """Scores as JSON: nested dicts and lists of numbers (spaCy may hand over numpy numbers)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return float(value)


def read_training_log(path: Union[str, Path], required: Sequence[str] = LOG_RECORD_KEYS) -> List[dict]:
    """The records of a JSONL log (one JSON object per line), in order.

    Blank lines are skipped. A line that is not a JSON object with the
    `required` keys (by default those of the training log) raises a
    ValueError naming file and line.
    """
    records = []
    for line_no, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_no}: not valid JSON: {error.msg}") from None
        missing = [key for key in required if not isinstance(record, dict) or key not in record]
        if missing:
            raise ValueError(f"{path}:{line_no}: not a training log record: no {', '.join(missing)}")
        records.append(record)
    return records
