import numpy
import pytest

from spacy_bert_crf.schemes import (
    BioTag,
    allowed_transitions,
    bio_tags,
    format_tag,
    is_valid_bio,
    parse_tag,
    repair_stray_inside,
)


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


def test_format_tag_keeps_the_users_notation():
    assert format_tag(BioTag("B", "LOC"), "_") == "B_LOC"
    assert format_tag(BioTag("I", "LOC"), "-") == "I-LOC"
    assert format_tag(BioTag("O", ""), "_") == "O"


def test_stray_inside_starts_an_entity_and_is_counted():
    # 平 壤 1 月 1 日 → B_LOC I_LOC I_T I_T I_T I_T, from the PD2014 corpus
    tags = [parse_tag(t)[0] for t in "B_LOC I_LOC I_T I_T I_T I_T O I_PER".split()]
    repaired, repairs = repair_stray_inside(tags)
    assert [format_tag(t) for t in repaired] == "B-LOC I-LOC B-T I-T I-T I-T O B-PER".split()
    assert repairs == {"T": 1, "PER": 1}


def test_valid_sequences_need_no_repair():
    tags = [parse_tag(t)[0] for t in "O B-T I-T B-T O B-LOC".split()]
    repaired, repairs = repair_stray_inside(tags)
    assert repaired == tags and not repairs


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
        by_mask = allowed.start[ids[0]] and all(
            allowed.transitions[i, j] for i, j in zip(ids[:-1], ids[1:])
        )
        assert is_valid_bio([tags[i] for i in ids]) == by_mask
