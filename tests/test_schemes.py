import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from spacy.training.iob_utils import tags_to_entities

from spacy_bert_crf.schemes import (
    ALL_LETTERS,
    SCHEMES,
    BioTag,
    allowed_transitions,
    bio_tags,
    detect_scheme,
    format_tag,
    from_biluo,
    is_valid_bio,
    parse_tag,
    to_biluo,
)


def parse(tags: str):
    return [parse_tag(tag, ALL_LETTERS)[0] for tag in tags.split()]


@pytest.mark.parametrize(
    "tag,expected,separator",
    [
        ("O", BioTag("O", ""), ""),
        ("B_LOC", BioTag("B", "LOC"), "_"),
        ("I-PER", BioTag("I", "PER"), "-"),
        ("B-PER.NAM", BioTag("B", "PER.NAM"), "-"),
        ("I_T", BioTag("I", "T"), "_"),
    ],
)
def test_parse_tag_takes_both_notations(tag, expected, separator):
    assert parse_tag(tag) == (expected, separator)


@pytest.mark.parametrize("tag", ["0", "B", "B_", "X-LOC", "o", "BLOC", "S-LOC", ""])
def test_parse_tag_rejects_what_is_not_bio(tag):
    with pytest.raises(ValueError, match="invalid tag"):
        parse_tag(tag)


def test_parse_tag_takes_the_letters_asked_for():
    assert parse_tag("S-LOC", ALL_LETTERS) == (BioTag("S", "LOC"), "-")
    assert parse_tag("M_ORG", ALL_LETTERS) == (BioTag("M", "ORG"), "_")
    with pytest.raises(ValueError, match=r"invalid tag 'L-LOC': expected 'O' or B-X/I-X/M-X/E-X/S-X"):
        parse_tag("L-LOC", ALL_LETTERS)


def test_format_tag_keeps_the_users_notation():
    assert format_tag(BioTag("B", "LOC"), "_") == "B_LOC"
    assert format_tag(BioTag("I", "LOC"), "-") == "I-LOC"
    assert format_tag(BioTag("O", ""), "_") == "O"


def test_schemes_spell_biluo():
    assert {name: scheme.letters for name, scheme in SCHEMES.items()} == {
        "bio": "BI",
        "iob1": "BI",
        "bioes": "BIES",
        "bmes": "BMES",
    }
    assert [name for name, scheme in SCHEMES.items() if scheme.closes] == ["bioes", "bmes"]
    assert SCHEMES["bmes"].describe() == "O, B-X, M-X, E-X or S-X"
    assert SCHEMES["bio"].describe() == "O, B-X or I-X"


@pytest.mark.parametrize(
    "scheme,tags,biluo",
    [
        ("bio", "O B-T I-T B-T O B-LOC", "O B-T L-T U-T O U-LOC"),
        ("iob1", "I-X I-X B-X O I-Y I-X", "B-X L-X U-X O U-Y U-X"),
        ("bioes", "B-X I-X E-X S-X O S-Y", "B-X I-X L-X U-X O U-Y"),
        ("bmes", "B-X M-X M-X E-X S-Y B-Y E-Y", "B-X I-X I-X L-X U-Y B-Y L-Y"),
    ],
)
def test_valid_sequences_need_no_repair_and_write_back_the_same(scheme, tags, biluo):
    read, repairs = to_biluo(parse(tags), SCHEMES[scheme])
    assert read == biluo.split() and not repairs
    assert [format_tag(tag) for tag in from_biluo(read, SCHEMES[scheme])] == tags.split()


@pytest.mark.parametrize(
    "scheme,tags,biluo,repairs",
    [
        # 平 壤 1 月 1 日 → B_LOC I_LOC I_T I_T I_T I_T, from the PD2014 corpus
        (
            "bio",
            "B_LOC I_LOC I_T I_T I_T I_T O I_PER",
            "B-LOC L-LOC B-T I-T I-T L-T O U-PER",
            [("stray_inside", "T", 2), ("stray_inside", "PER", 7)],
        ),
        ("iob1", "O B-X I-X", "O B-X L-X", [("stray_begin", "X", 1)]),
        ("bioes", "B-X O E-Y", "U-X O U-Y", [("unclosed_entity", "X", 1), ("stray_end", "Y", 2)]),
        ("bioes", "I-X E-X B-Y", "B-X L-X U-Y", [("stray_inside", "X", 0), ("unclosed_entity", "Y", 2)]),
        # Resume NER's train set: an ORG cut by a sentence boundary, each half in its own sentence.
        ("bmes", "B-ORG M-ORG M-ORG", "B-ORG I-ORG L-ORG", [("unclosed_entity", "ORG", 2)]),
        (
            "bmes",
            "M-ORG M-ORG E-ORG B-T",
            "B-ORG I-ORG L-ORG U-T",
            [("stray_inside", "ORG", 0), ("unclosed_entity", "T", 3)],
        ),
        ("bmes", "B-X E-Y", "U-X U-Y", [("unclosed_entity", "X", 1), ("stray_end", "Y", 1)]),
    ],
)
def test_violations_are_read_the_usual_way_and_reported(scheme, tags, biluo, repairs):
    read, found = to_biluo(parse(tags), SCHEMES[scheme])
    assert read == biluo.split()
    assert [(repair.kind, repair.label, repair.index) for repair in found] == repairs


@pytest.mark.parametrize(
    "scheme,tags,message",
    [
        ("bio", "O I-T", "I-T continues no T entity: expected B-T before it"),
        ("bmes", "M_ORG E_ORG", "M_ORG continues no ORG entity: expected B_ORG before it"),
        ("bmes", "E-ORG", "E-ORG closes no ORG entity: expected B-ORG before it"),
        ("bmes", "B-ORG O", "the ORG entity is not closed: expected M-ORG or E-ORG, found O"),
        ("bioes", "B-ORG", "the ORG entity is not closed: expected E-ORG before the end of the sentence"),
        ("iob1", "B-X", "B-X follows no X entity: IOB1 begins an entity with I-X"),
    ],
)
def test_repairs_say_what_was_expected(scheme, tags, message):
    separator = "_" if "_" in tags else "-"
    assert to_biluo(parse(tags), SCHEMES[scheme], separator)[1][0].message == message


@pytest.mark.parametrize(
    "sentences,scheme",
    [
        (["B-X M-X E-X O", "S-Y"], "bmes"),
        (["B-X E-X", "S-Y O"], "bioes"),
        (["I-X I-X O I-Y B-Y"], "iob1"),
        (["B-X I-X O B-Y", "I-Y O"], "bio"),
        # PD2014: a few stray I_T among many B_ starts is noisy BIO, not IOB1.
        (["B_LOC I_LOC I_T I_T O B_PER"], "bio"),
        (["O O", ""], "bio"),
        ([], "bio"),
    ],
)
def test_detect_scheme(sentences, scheme):
    assert detect_scheme(parse(sentence) for sentence in sentences) == scheme


def test_iob1_writes_b_only_between_entities_of_one_type():
    tags = from_biluo("U-X U-X O U-X U-Y B-Y L-Y".split(), SCHEMES["iob1"])
    assert [format_tag(tag) for tag in tags] == "I-X B-X O I-X I-Y B-Y I-Y".split()


@st.composite
def span_sets(draw):
    """Random non-overlapping spans (start, end inclusive, label), adjacent ones included, and a length."""
    spans, position = [], 0
    for _ in range(draw(st.integers(0, 6))):
        start = position + draw(st.integers(0, 2))
        end = start + draw(st.integers(0, 3))
        spans.append((draw(st.sampled_from("XY")), start, end))
        position = end + 1
    return spans, position + draw(st.integers(0, 2))


def biluo_of(spans, length):
    biluo = ["O"] * length
    for label, start, end in spans:
        if start == end:
            biluo[start] = f"U-{label}"
        else:
            biluo[start : end + 1] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1) + [f"L-{label}"]
    return biluo


@given(span_sets(), st.sampled_from(sorted(SCHEMES)))
def test_any_spans_written_in_a_scheme_read_back_the_same(span_set, name):
    spans, length = span_set
    tags = from_biluo(biluo_of(spans, length), SCHEMES[name])
    biluo, repairs = to_biluo(tags, SCHEMES[name])
    assert not repairs
    assert tags_to_entities(biluo) == spans
    # BMES and BIOES are told apart only by M-; BIO and IOB1 read alike from both.
    detected = SCHEMES[detect_scheme([tags])]
    assert tags_to_entities(to_biluo(tags, detected)[0]) == spans


@given(st.data(), st.sampled_from(sorted(SCHEMES)))
def test_any_tags_read_into_valid_biluo_and_repairs_name_every_change(data, name):
    scheme = SCHEMES[name]
    tag = st.sampled_from([BioTag("O", "")] + [BioTag(letter, label) for letter in scheme.letters for label in "XY"])
    tags = data.draw(st.lists(tag, max_size=12))
    biluo, repairs = to_biluo(tags, scheme)
    tags_to_entities(biluo)  # raises on an invalid BILUO sequence
    assert len(biluo) == len(tags)
    assert all(0 <= repair.index < len(tags) for repair in repairs)
    # Without repairs, the tags are exactly what the scheme writes for what was read.
    assert (from_biluo(biluo, scheme) == tags) == (not repairs)


def test_allowed_transitions_forbid_inside_without_its_begin():
    tags = bio_tags(["LOC", "PER"])
    assert tags == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    allowed = allowed_transitions(tuple(tags))
    index = {tag: i for i, tag in enumerate(tags)}
    assert not allowed.start[index["I-LOC"]] and allowed.start[index["B-LOC"]]
    assert not allowed.transitions[index["O"], index["I-LOC"]]
    assert not allowed.transitions[index["B-PER"], index["I-LOC"]]
    assert not allowed.transitions[index["I-PER"], index["I-LOC"]]
    assert allowed.transitions[index["B-LOC"], index["I-LOC"]]
    assert allowed.transitions[index["I-LOC"], index["I-LOC"]]
    # Everything else is free: 2 allowed predecessors for each I-X, all for the rest.
    assert allowed.transitions.sum() == 3 * len(tags) + 2 * 2
    assert allowed.end.all()


def test_is_valid_bio_matches_allowed_transitions():
    tags = bio_tags(["A", "B"])
    allowed = allowed_transitions(tuple(tags))
    rng = numpy.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, len(tags), size=5)
        by_mask = allowed.start[ids[0]] and all(allowed.transitions[i, j] for i, j in zip(ids[:-1], ids[1:]))
        assert is_valid_bio([tags[i] for i in ids]) == by_mask
