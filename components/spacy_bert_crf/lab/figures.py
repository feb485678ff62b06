"""Figures for the report: the data, the learned CRF, training curves and tag confusion.

Every plotting function writes one PNG and returns the numbers it drew, so that
tests (and `figures.json`) can check the picture against its source. Figures
are built with matplotlib's object API (`Figure` on an Agg canvas) rather than
`pyplot`: that renders without a display, leaves the process-wide backend of
whoever imports this module alone (a notebook keeps its inline backend), and
registers no figure anywhere, so nothing stays open after the PNG is written.
"""

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..architectures import head_module
from ..crf import CRFHead
from ..formats import PathLike, doc_to_tags
from ..training_log import read_training_log
from .vectors import sha256

START = "START"
END = "END"
# Annotating cells beyond O + 6 entity types (13 tags) makes them unreadable.
MAX_ANNOTATED_TAGS = 13


def label_distribution(reports: Dict[str, dict], path: PathLike) -> Dict[str, Dict[str, int]]:
    """Bar chart of entity counts per label, one bar per split, from conversion reports.

    `reports` maps a split name to `ConversionReport.to_dict()`. Every split
    gets a bar for every label of any split (0 where it has none), so the
    returned counts are zero-filled the same way.
    """
    labels = sorted({label for report in reports.values() for label in report["entities"]})
    counts = {
        split: {label: int(report["entities"].get(label, 0)) for label in labels} for split, report in reports.items()
    }
    figure, ax = _new_figure()
    positions = numpy.arange(len(labels))
    width = 0.8 / max(len(counts), 1)
    for i, (split, split_counts) in enumerate(counts.items()):
        offset = (i - (len(counts) - 1) / 2) * width
        bars = ax.bar(positions + offset, list(split_counts.values()), width, label=split)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(positions, labels)
    ax.set_xlabel("Entity label")
    ax.set_ylabel("Entities")
    ax.set_title("Entities per label and split")
    ax.legend(title="Split")
    # Room above the tallest bar for its count.
    ax.margins(y=0.1)
    _save(figure, path)
    return counts


def sentence_lengths(lengths: Dict[str, Sequence[int]], path: PathLike) -> Dict[str, Dict[str, float]]:
    """Histogram of sentence lengths (characters) per split, with mean and mean + 3σ.

    The report padded to mean + 3σ of the training sentences, so the lines are
    drawn at the "train" split's statistics, or at those of all splits pooled
    where there is no "train". Returns each split's mean, std (population, as
    numpy's default), mean + 3·std, max and count.
    """
    arrays = {split: numpy.asarray(values, dtype=float) for split, values in lengths.items()}
    if not arrays:
        raise ValueError("No splits to plot sentence lengths for.")
    empty = [split for split, values in arrays.items() if not values.size]
    if empty:
        raise ValueError(f"No sentences to plot in split(s) {empty}.")
    stats = {split: _length_stats(values) for split, values in arrays.items()}
    if "train" in stats:
        reference, reference_name = stats["train"], "train"
    else:
        reference, reference_name = _length_stats(numpy.concatenate(list(arrays.values()))), "all splits"
    figure, ax = _new_figure()
    # Shared bins, so that the splits' bars line up.
    bins = numpy.histogram_bin_edges(numpy.concatenate(list(arrays.values())), bins=50)
    for split, values in arrays.items():
        # Densities, so that a small test set is comparable with a large train set.
        ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.35, label=split)
    ax.axvline(
        reference["mean"], color="black", linestyle="--", label=f"mean ({reference_name}) = {reference['mean']:.1f}"
    )
    ax.axvline(
        reference["mean_plus_3std"],
        color="red",
        linestyle=":",
        label=f"mean + 3σ ({reference_name}) = {reference['mean_plus_3std']:.1f}",
    )
    ax.set_xlabel("Sentence length (characters)")
    ax.set_ylabel("Density")
    ax.set_title("Sentence lengths")
    ax.legend()
    _save(figure, path)
    return stats


def crf_transitions(
    nlp: Language, pipe_name: str = "bert_crf_ner"
) -> Tuple[List[str], numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The pipe's tags and its CRF's learned transition, start and end scores.

    `transitions[i, j]` scores tag i followed by tag j; rows and columns are in
    the order of `pipe.tags`, the model's output columns.
    """
    pipe = nlp.get_pipe(pipe_name)
    module = head_module(pipe.model)
    if not isinstance(module, CRFHead):
        raise ValueError(f"'{pipe_name}' has a {type(module).__name__}, not a CRF: it learns no transition scores.")
    crf = module.crf
    return (
        list(pipe.tags),
        _to_numpy(crf.transitions),
        _to_numpy(crf.start_transitions),
        _to_numpy(crf.end_transitions),
    )


def transition_heatmap(
    tags: Sequence[str],
    transitions: numpy.ndarray,
    start: numpy.ndarray,
    end: numpy.ndarray,
    path: PathLike,
) -> Dict[str, Any]:
    """Heatmap of CRF scores: rows "from" (START, then the tags), columns "to" (the tags, then END).

    The START→END cell has no score: it is left blank, and None in the
    returned matrix.
    """
    tags = list(tags)
    n_tags = len(tags)
    matrix = numpy.full((n_tags + 1, n_tags + 1), numpy.nan)
    matrix[0, :n_tags] = start
    matrix[1:, :n_tags] = transitions
    matrix[1:, n_tags] = end
    row_labels = [START, *tags]
    col_labels = [*tags, END]
    figure, ax = _new_figure(size=(1.0 + 0.55 * (n_tags + 1), 0.8 + 0.5 * (n_tags + 1)))
    limit = float(numpy.nanmax(numpy.abs(matrix))) or 1.0
    # Centred on 0, so that red (favoured) and blue (penalised) mean the same in every run.
    _heatmap(
        figure,
        ax,
        matrix,
        row_labels,
        col_labels,
        cmap="RdBu_r",
        norm=TwoSlopeNorm(0.0, -limit, limit),
        annotate=n_tags <= MAX_ANNOTATED_TAGS,
        colorbar_label="Score",
    )
    ax.set_xlabel("To tag")
    ax.set_ylabel("From tag")
    ax.set_title("CRF transition scores")
    _save(figure, path)
    return {
        "row_labels": row_labels,
        "col_labels": col_labels,
        "matrix": [[None if math.isnan(value) else float(value) for value in row] for row in matrix],
    }


def training_curves(
    logs: Dict[str, Sequence[dict]],
    path: PathLike,
    score: str = "ents_f",
    title: str = "Training curves",
) -> Dict[str, Any]:
    """Training loss and dev score against the step, one line per run.

    `logs` maps a run name (the legend) to its log records (see
    `read_training_log`). The loss of a record is the sum over components of
    their mean loss per step; the score is `scores[score]` × 100, with a gap
    where the scorer gave None. Returns `{"score": score, "runs": {run:
    {"step", "loss", "score"}}}`.
    """
    runs = {name: _curve(name, records, score) for name, records in logs.items()}
    figure, (loss_ax, score_ax) = _new_figure(size=(12, 4.5), columns=2)
    for name, curve in runs.items():
        loss_ax.plot(curve["step"], curve["loss"], marker=".", label=name)
        scores = [numpy.nan if value is None else value for value in curve["score"]]
        score_ax.plot(curve["step"], scores, marker=".", label=name)
    loss_ax.set_xlabel("Step")
    loss_ax.set_ylabel("Training loss (mean per step)")
    loss_ax.set_title("Training loss")
    score_ax.set_xlabel("Step")
    score_ax.set_ylabel(f"Dev {score} (%)")
    score_ax.set_title(f"Dev {score}")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(title)
    _save(figure, path)
    return {"score": score, "runs": runs}


def tag_confusion(
    nlp: Language, gold_docs: Iterable[Doc], batch_size: int = 64, pipe_name: str = "bert_crf_ner"
) -> Tuple[List[str], numpy.ndarray]:
    """Count (gold tag, predicted tag) pairs over every token of the gold Docs.

    The pipeline tags each gold Doc's text. Its tokeniser must give back the
    gold tokens one for one (spaCy's zh char segmenter does for the character
    Docs of `formats.read_two_file`); anything else raises a ValueError rather
    than comparing tags of different tokens. Returns the pipe's tags and the
    counts, rows gold and columns predicted, in the order of the tags.
    """
    tags = list(nlp.get_pipe(pipe_name).tags)
    index = {tag: i for i, tag in enumerate(tags)}
    counts = numpy.zeros((len(tags), len(tags)), dtype=numpy.int64)
    gold_docs = list(gold_docs)
    predicted_docs = nlp.pipe((doc.text for doc in gold_docs), batch_size=batch_size)
    for doc_no, (gold, predicted) in enumerate(zip(gold_docs, predicted_docs)):
        gold_words = [token.text for token in gold]
        if [token.text for token in predicted] != gold_words:
            raise ValueError(
                f"Doc {doc_no}: the pipeline's tokens differ from the gold tokens "
                f"({len(predicted)} vs {len(gold_words)} in {gold.text[:40]!r}), so their tags "
                "cannot be compared one to one. Use a pipeline with the zh char segmenter."
            )
        for gold_tag, predicted_tag in zip(doc_to_tags(gold), doc_to_tags(predicted)):
            if gold_tag not in index:
                raise ValueError(f"Doc {doc_no}: gold tag {gold_tag!r} is not one of '{pipe_name}''s tags {tags}.")
            counts[index[gold_tag], index[predicted_tag]] += 1
    return tags, counts


def confusion_matrix(tags: Sequence[str], counts: numpy.ndarray, path: PathLike) -> numpy.ndarray:
    """Heatmap of tag confusion, each gold row normalised to sum to 1.

    Rows of tags with no gold tokens stay 0 rather than dividing by zero.
    Returns the normalised matrix.
    """
    counts = numpy.asarray(counts, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = numpy.divide(counts, totals, out=numpy.zeros_like(counts), where=totals > 0)
    n_tags = len(tags)
    figure, ax = _new_figure(size=(1.0 + 0.55 * n_tags, 0.8 + 0.5 * n_tags))
    _heatmap(
        figure,
        ax,
        normalised,
        list(tags),
        list(tags),
        cmap="Blues",
        norm=Normalize(0.0, 1.0),
        annotate=True,
        colorbar_label="Share of gold row",
    )
    ax.set_xlabel("Predicted tag")
    ax.set_ylabel("Gold tag")
    ax.set_title("Tag confusion (rows normalised)")
    _save(figure, path)
    return normalised


def write_report_figures(
    nlp: Language,
    corpus_dir: PathLike,
    training_log: PathLike,
    output_dir: PathLike,
    test_split: str = "test",
    pipe_name: str = "bert_crf_ner",
) -> Dict[str, Any]:
    """Write every figure for one trained pipeline into `output_dir`, with `figures.json`.

    `corpus_dir` holds `<split>.spacy` and the conversion report `<split>.json`
    for "train", "dev" and `test_split`; the confusion matrix is computed on
    `test_split`. The CRF heatmap is left out for a pipe without a CRF.
    Returns the data of each figure written, by figure name (as in the JSON).
    """
    corpus_dir, output_dir = Path(corpus_dir), Path(output_dir)
    splits = list(dict.fromkeys(["train", "dev", test_split]))
    reports = {
        split: json.loads(_corpus_file(corpus_dir, split, ".json").read_text(encoding="utf-8")) for split in splits
    }
    docs = {
        split: list(DocBin().from_disk(_corpus_file(corpus_dir, split, ".spacy")).get_docs(nlp.vocab))
        for split in splits
    }
    figures: Dict[str, Any] = {
        "corpus_sha256": {split: sha256(_corpus_file(corpus_dir, split, ".spacy")) for split in splits},
        "label_distribution": label_distribution(reports, output_dir / "label_distribution.png"),
        # Docs hold one token per character, so the token count is the length in characters.
        "sentence_lengths": sentence_lengths(
            {split: [len(doc) for doc in split_docs] for split, split_docs in docs.items()},
            output_dir / "sentence_lengths.png",
        ),
    }
    if isinstance(head_module(nlp.get_pipe(pipe_name).model), CRFHead):
        figures["crf_transitions"] = transition_heatmap(
            *crf_transitions(nlp, pipe_name), output_dir / "crf_transitions.png"
        )
    figures["training_curves"] = training_curves(
        {str(training_log): read_training_log(training_log)},
        output_dir / "training_curves.png",
    )
    tags, counts = tag_confusion(nlp, docs[test_split], pipe_name=pipe_name)
    figures["confusion_matrix"] = {
        "split": test_split,
        "tags": tags,
        "counts": counts.tolist(),
        "normalised": confusion_matrix(tags, counts, output_dir / "confusion_matrix.png").tolist(),
    }
    summary = json.dumps(figures, indent=2, ensure_ascii=False)
    (output_dir / "figures.json").write_text(summary + "\n", encoding="utf-8")
    return figures


def _corpus_file(corpus_dir: Path, split: str, suffix: str) -> Path:
    path = corpus_dir / f"{split}{suffix}"
    if not path.exists():
        raise FileNotFoundError(f"No {path}: the corpus directory needs {split}{suffix} (see `convert`).")
    return path


def _length_stats(values: numpy.ndarray) -> Dict[str, float]:
    mean, std = float(values.mean()), float(values.std())
    return {
        "mean": mean,
        "std": std,
        "mean_plus_3std": mean + 3 * std,
        "max": float(values.max()),
        "count": int(values.size),
    }


def _curve(name: str, records: Sequence[dict], score: str) -> Dict[str, list]:
    curve: Dict[str, list] = {"step": [], "loss": [], "score": []}
    for record in records:
        if score not in record["scores"]:
            raise ValueError(f"Run {name!r}, step {record['step']}: no score {score!r} in {sorted(record['scores'])}.")
        value = record["scores"][score]
        curve["step"].append(record["step"])
        curve["loss"].append(float(sum(record["losses"].values())))
        curve["score"].append(None if value is None else 100 * float(value))
    return curve


def _to_numpy(parameter) -> numpy.ndarray:
    return parameter.detach().float().cpu().numpy()


def _new_figure(size: Tuple[float, float] = (8, 5), columns: int = 1) -> Tuple[Figure, Any]:
    """A figure on an Agg canvas with `columns` axes side by side (one Axes, or an array of them)."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, columns)


def _heatmap(
    figure: Figure,
    ax: Axes,
    matrix: numpy.ndarray,
    row_labels: List[str],
    col_labels: List[str],
    *,
    cmap: str,
    norm: Normalize,
    annotate: bool,
    colorbar_label: str,
) -> None:
    """Draw `matrix` on `ax` with labelled ticks, a colour bar and, if `annotate`, values."""
    # Masked, so that NaN cells are drawn blank rather than in the colour of the minimum.
    image = ax.imshow(numpy.ma.masked_invalid(matrix), cmap=cmap, norm=norm, aspect="auto")
    figure.colorbar(image, ax=ax, label=colorbar_label)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    if not annotate:
        return
    for (row, col), value in numpy.ndenumerate(matrix):
        if math.isnan(value):
            continue
        # White text on dark cells, black on light ones, whatever the colour map.
        red, green, blue, _ = image.cmap(image.norm(value))
        colour = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)


def _save(figure: Figure, path: PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
