"""Tag corpora of any size: one JSONL record for every input line, in resumable shards.

Inputs are plain-text files (one document a line) or JSONL files (a text field
and optionally an id field), gzip-compressed or not, named by paths, globs or
folders. A text file whose every line is space-separated single characters
(the two-file format's text side, as `predict.py` reads it) is read as those
characters: the document is the line without the separating spaces, and the
entities' offsets are into that text. Each file is cut into shards of `shard_lines` lines. A shard is the
unit of work and of output: `OUTPUT_DIR/shards/<name>.jsonl`, written to a
temporary file and renamed when complete, so a shard file is either whole or
absent. A re-run skips the shards that exist, and so resumes after a crash
with the same output and no duplicates.

Every input line gets exactly one record, in input order within its shard:

    {"source": FILE, "line": N, "id": ID?, "chars": LEN, "ents": [...], "problems": [...]?}

with each entity's character offsets, label, text and probability. A line
that is not valid UTF-8 is decoded with U+FFFD in place of the bad bytes; a
JSONL line that is not a JSON object with a string text field is tagged as
empty text. Both are named in the record's `problems` and counted in the
manifest, never dropped.

Each shard is tagged by one `nlp.pipe` call, so its output depends on the
shard alone: not on the engine, the number of workers, or what ran before a
crash. (Batches of other sizes could flip a near-tie between two tags.)

Engines (`annotate`): "local" tags the shards one after another in this
process, with `nlp.pipe(n_process=workers)`; "ray" maps the shards over a Ray
Data actor pool whose actors load the model once each, and read and write
their shards themselves, so nothing but shard names and counts goes through
the driver (the inputs and the output folder must be on a file system every
node sees). A worker that dies has its shard retried by Ray on another actor;
the shard's atomic rename makes the retry's output the only one.
"""

import glob
import gzip
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import spacy
import torch
from spacy.tokens import Doc

from ..formats import PathLike, are_characters, split_tokens

INPUT_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class InputFormat:
    """How to read a line: plain text, or JSONL with these fields."""

    text_field: str = "text"
    id_field: Optional[str] = "id"


@dataclass(frozen=True)
class Shard:
    """Lines `first_line` to `first_line + n_lines - 1` (1-based) of `source`."""

    source: str
    first_line: int
    n_lines: int
    name: str
    # Every line of the file is space-separated single characters.
    char_separated: bool = False

    @property
    def jsonl(self) -> bool:
        return _is_jsonl(self.source)


def input_files(inputs: Sequence[PathLike]) -> List[Path]:
    """The files `inputs` name: paths, globs, and folders (their text and JSONL files, recursively).

    Raises FileNotFoundError naming an input that matches nothing.
    """
    files = []
    for given in map(str, inputs):
        if Path(given).is_dir():
            matches = [path for path in sorted(Path(given).rglob("*")) if path.is_file() and _is_input(path)]
        elif glob.has_magic(given):
            matches = [Path(path) for path in sorted(glob.glob(given, recursive=True)) if Path(path).is_file()]
        else:
            matches = [Path(given)] if Path(given).is_file() else []
        if not matches:
            raise FileNotFoundError(f"{given}: no such file, or no text or JSONL files in it")
        files.extend(matches)
    return list(dict.fromkeys(files))


def plan_shards(files: Sequence[Path], shard_lines: int) -> List[Shard]:
    """Cut each file into shards of `shard_lines` lines (its last one shorter)."""
    shards = []
    for number, path in enumerate(files):
        # One pass over the file: its lines, and whether each is single characters. (A file of
        # lines of one character reads the same either way.)
        n_lines, char_separated = 0, not _is_jsonl(str(path))
        for raw in _raw_lines(path):
            n_lines += 1
            char_separated = char_separated and are_characters(split_tokens(raw.decode("utf-8", errors="replace")))
        stem = _safe_name(path.name)
        for index, first in enumerate(range(0, n_lines, shard_lines)):
            name = f"{number:04d}-{stem}-{index:05d}"
            shards.append(Shard(str(path), first + 1, min(shard_lines, n_lines - first), name, char_separated))
    return shards


def shard_documents(shard: Shard, input_format: InputFormat) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """The shard's lines as (text, record without entities)."""
    lines = _raw_lines(Path(shard.source))
    for line_no, raw in enumerate(lines, start=1):
        if line_no < shard.first_line:
            continue
        if line_no >= shard.first_line + shard.n_lines:
            break
        yield parse_line(raw, shard.source, line_no, shard.jsonl, input_format, shard.char_separated)


def parse_line(
    raw: bytes, source: str, line_no: int, jsonl: bool, input_format: InputFormat, char_separated: bool = False
) -> Tuple[str, Dict[str, Any]]:
    """One input line as (text to tag, its record so far); a `char_separated`
    line's text is its characters without the separating spaces."""
    problems = []
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        line = raw.decode("utf-8", errors="replace")
        problems.append("invalid_utf8")
    record: Dict[str, Any] = {"source": source, "line": line_no}
    text = "".join(split_tokens(line)) if char_separated else line
    if jsonl:
        text = ""
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            value = None
            problems.append("invalid_json")
        if value is not None:
            if isinstance(value, dict) and isinstance(value.get(input_format.text_field), str):
                text = value[input_format.text_field]
            else:
                problems.append("no_text_field")
            if isinstance(value, dict) and input_format.id_field and input_format.id_field in value:
                record["id"] = value[input_format.id_field]
    record["chars"] = len(text)
    if problems:
        record["problems"] = problems
    return text, record


def doc_entities(doc: Doc, spans_key: Optional[str] = "ents") -> List[Dict[str, Any]]:
    """The Doc's entities with their probabilities (from `doc.spans[spans_key]`, where the pipe keeps them)."""
    if spans_key and spans_key in doc.spans and "scores" in doc.spans[spans_key].attrs:
        group = doc.spans[spans_key]
        pairs = zip(group, group.attrs["scores"])
    else:
        pairs = ((ent, None) for ent in doc.ents)
    return [
        {
            "start": span.start_char,
            "end": span.end_char,
            "label": span.label_,
            "text": span.text,
            "probability": None if score is None else round(float(score), 6),
        }
        for span, score in pairs
    ]


def write_shard(path: Path, records: Iterable[Dict[str, Any]]) -> int:
    """Write the records as JSONL to `path`, atomically: whole or not at all. The count written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    count = 0
    with partial.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    return count


def shard_path(output_dir: PathLike, shard: Shard) -> Path:
    return Path(output_dir) / "shards" / f"{shard.name}.jsonl"


class ShardTagger:
    """Loads the model once; tags whole shards and writes them. A Ray actor, or used in-process."""

    def __init__(
        self,
        model: str,
        output_dir: str,
        input_format: InputFormat,
        batch_size: int,
        gpu_id: int = -1,
        n_process: int = 1,
    ):
        if gpu_id >= 0:
            spacy.require_gpu(gpu_id)
        if n_process > 1:
            # spaCy forks its workers, and a child forked after torch's OpenMP
            # threads have run hangs: each worker computes on one thread instead.
            torch.set_num_threads(1)
        self.nlp = spacy.load(model)
        self.output_dir = output_dir
        self.input_format = input_format
        self.batch_size = batch_size
        self.n_process = n_process

    def tag_shard(self, shard: Shard) -> int:
        """Tag the shard's lines with one `nlp.pipe` call and write them; the number of records."""
        documents = list(shard_documents(shard, self.input_format))
        texts = [text for text, _ in documents]
        docs = self.nlp.pipe(texts, batch_size=self.batch_size, n_process=self.n_process)
        records = ({**record, "ents": doc_entities(doc)} for (_, record), doc in zip(documents, docs))
        return write_shard(shard_path(self.output_dir, shard), records)

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """Ray Data's `map_batches` entry: a batch of shards (as columns) in, their line counts out."""
        shards = [Shard(**dict(zip(batch, row))) for row in zip(*batch.values())]
        return {"name": [shard.name for shard in shards], "written": [self.tag_shard(shard) for shard in shards]}


def annotate_ray(
    model: str,
    shards: Sequence[Shard],
    output_dir: PathLike,
    input_format: InputFormat,
    batch_size: int,
    workers: int,
    gpus_per_worker: float = 0.0,
    progress: Callable[[str], None] = lambda name: None,
) -> None:
    """Tag `shards` on the Ray cluster `ray.init` has joined: an actor pool of `workers`
    ShardTaggers (`gpus_per_worker` GPUs each), one shard per task, retried if a worker dies."""
    import ray

    dataset = ray.data.from_items([asdict(shard) for shard in shards], override_num_blocks=max(1, len(shards)))
    tagged = dataset.map_batches(
        ShardTagger,
        fn_constructor_kwargs={
            "model": model,
            "output_dir": str(output_dir),
            "input_format": input_format,
            "batch_size": batch_size,
            "gpu_id": 0 if gpus_per_worker > 0 else -1,
        },
        batch_size=1,
        # Ray Data restarts a dead actor and retries its task without limit by default.
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=gpus_per_worker,
        num_cpus=1,
    )
    for row in tagged.iter_rows():
        progress(row["name"])


def manifest(output_dir: PathLike, shards: Sequence[Shard], input_lines: int, seconds: float) -> Dict[str, Any]:
    """What the shards hold, read back from them: documents, characters, entities per type, problems."""
    entities, problems = Counter(), Counter()
    documents = chars = 0
    for shard in shards:
        with shard_path(output_dir, shard).open(encoding="utf-8") as file:
            for line in file:
                record = json.loads(line)
                documents += 1
                chars += record["chars"]
                entities.update(ent["label"] for ent in record["ents"])
                problems.update(record.get("problems", []))
    return {
        "shards": [shard_path(output_dir, shard).name for shard in shards],
        "input_lines": input_lines,
        "documents": documents,
        "complete": documents == input_lines,
        "characters": chars,
        "entities": dict(sorted(entities.items())),
        "problems": dict(sorted(problems.items())),
        "wall_seconds": round(seconds, 3),
    }


def annotate(
    model: str,
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    engine: str = "local",
    workers: int = 1,
    batch_size: int = 64,
    shard_lines: int = 10_000,
    input_format: InputFormat = InputFormat(),
    address: Optional[str] = None,
    gpus_per_worker: float = 0.0,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Tag every line of `inputs` into `output_dir`'s shards; write and return the manifest."""
    started = time.perf_counter()
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir}: not a directory")
    shards = plan_shards(input_files(inputs), shard_lines)
    if overwrite:
        for shard in shards:
            shard_path(output_dir, shard).unlink(missing_ok=True)
    todo = [shard for shard in shards if not shard_path(output_dir, shard).exists()]
    for shard in todo:
        # What a crashed writer left: never a shard, so never read; removed before the retry.
        for partial in shard_path(output_dir, shard).parent.glob(f".{shard.name}.jsonl.*.partial"):
            partial.unlink()
    log(f"{len(shards)} shards, {len(shards) - len(todo)} already done, {len(todo)} to tag ({engine})")
    if engine == "local":
        tagger = ShardTagger(model, str(output_dir), input_format, batch_size, n_process=workers)
        for shard in todo:
            tagger.tag_shard(shard)
            log(f"wrote {shard.name} ({shard.n_lines} lines)")
    elif engine == "ray":
        import ray

        # Without an address, a Ray of our own: "local" never joins a cluster that
        # RAY_ADDRESS or a stale /tmp/ray/ray_current_cluster names.
        ray.init(address=address or "local", num_cpus=None if address else workers, ignore_reinit_error=True)
        try:
            annotate_ray(
                model,
                todo,
                output_dir,
                input_format,
                batch_size,
                workers,
                gpus_per_worker,
                progress=lambda name: log(f"wrote {name}"),
            )
        finally:
            ray.shutdown()
    else:
        raise ValueError(f"engine must be 'local' or 'ray', not {engine!r}")
    missing = [shard.name for shard in shards if not shard_path(output_dir, shard).exists()]
    if missing:
        raise RuntimeError(f"shards not written: {', '.join(missing)}")
    result = manifest(output_dir, shards, sum(shard.n_lines for shard in shards), time.perf_counter() - started)
    (output_dir / MANIFEST).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, without their line ends (split on newlines only)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as file:
        for line in file:
            yield line.rstrip(b"\n").rstrip(b"\r")


def _is_jsonl(source: str) -> bool:
    return source.endswith((".jsonl", ".jsonl.gz"))


def _is_input(path: Path) -> bool:
    return path.name.endswith(INPUT_SUFFIXES)


def _safe_name(name: str) -> str:
    return "".join(char if char.isalnum() or char in "._-" else "_" for char in name)
