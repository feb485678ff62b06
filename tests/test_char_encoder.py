"""The character encoder: bigram input on and off, self-contained serialisation, the shipped vectors."""

import json
import shutil

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam, set_dropout_rate

from conftest import ASSETS, tagger_config
from spacy_bert_crf.char_encoder import CharBert, char_bert_module, doc_windows
from spacy_bert_crf.char_inputs import CharVocab, fold, load_vectors
from spacy_bert_crf.lab.encoders import CHAR_VECTOR_STD, EncoderShape, build_encoder

TEXTS = ["人民网1月1日讯据《纽约时报》报道", "iPhone 2013年在北京发布", "１２月３１日"]


def trained_pipe(encoder, bigram_vectors, pd2014_docs, steps=4):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(encoder, bigram_vectors=bigram_vectors))
    examples = [
        Example.from_dict(
            nlp.make_doc(doc.text), {"entities": [(e.start_char, e.end_char, e.label_) for e in doc.ents]}
        )
        for doc in pd2014_docs[:8]
    ]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-3))
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp


def emissions(nlp, texts):
    return [rows.copy() for rows in nlp.get_pipe("bert_crf_ner").model.predict([nlp.make_doc(text) for text in texts])]


@pytest.mark.parametrize("with_bigrams", [True, False], ids=["bigrams", "no-bigrams"])
def test_bigram_input_on_and_off(with_bigrams, tiny_encoder, tiny_vectors, pd2014_docs):
    bigram_vectors = tiny_vectors / "bigrams.npz" if with_bigrams else None
    nlp = trained_pipe(tiny_encoder, bigram_vectors, pd2014_docs)
    module = char_bert_module(nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    assert hasattr(module, "bigrams") == with_bigrams
    if with_bigrams:
        keys, vectors = load_vectors(bigram_vectors)
        assert module.bigrams.num_embeddings == len(keys) + 1
        # Width folding reaches the bigrams: full- and half-width digits read the same rows.
        full, half = (
            doc_windows([nlp.make_doc(text)], module.vocab, module.bigram_vocab, 8, 6) for text in ("１２月", "12月")
        )
        assert (full.left == half.left).all() and (full.right == half.right).all()
    rows = emissions(nlp, TEXTS)
    assert [len(r) for r in rows] == [len(nlp.make_doc(text)) for text in TEXTS]
    assert numpy.allclose(rows[2], emissions(nlp, ["12月31日"])[0], atol=1e-5)


def test_a_frozen_bigram_table_stays_as_trained_and_stays_frozen_when_saved(tiny_encoder, tiny_vectors, pd2014_docs):
    nlp = spacy.blank("zh")
    config = tagger_config(tiny_encoder, bigram_vectors=tiny_vectors / "bigrams.npz")
    config["model"]["tok2vec"]["train_bigram_vectors"] = False
    nlp.add_pipe("bert_crf_ner", config=config)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:8]]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-2))
    module = char_bert_module(nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    table, projection = module.bigrams.weight.detach().clone(), module.bigram_projection.weight.detach().clone()
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert torch.equal(module.bigrams.weight, table)
    assert not torch.equal(module.bigram_projection.weight, projection)
    loaded = spacy.blank("zh").from_config(nlp.config).from_bytes(nlp.to_bytes())
    loaded_module = char_bert_module(loaded.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    assert not loaded_module.bigrams.weight.requires_grad and loaded_module.bigram_projection.weight.requires_grad


def test_hashed_bigram_corrections_start_at_zero_and_learn_on_top_of_the_frozen_table(
    tiny_encoder, tiny_vectors, pd2014_docs
):
    nlp = spacy.blank("zh")
    config = tagger_config(
        tiny_encoder,
        bigram_vectors=tiny_vectors / "bigrams.npz",
        encoder_settings={"train_bigram_vectors": False, "bigram_buckets": 512},
    )
    nlp.add_pipe("bert_crf_ner", config=config)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:8]]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-2))
    module = char_bert_module(nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec"))
    assert module.bigram_corrections.weight.shape == (512, module.bigrams.embedding_dim)
    assert not module.bigram_corrections.weight.any()
    table = module.bigrams.weight.detach().clone()
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert torch.equal(module.bigrams.weight, table)
    # Only the rows of bigrams the batch holds have learnt.
    windows = doc_windows([eg.predicted for eg in examples], module.vocab, module.bigram_vocab, 32, 24, None, 512)
    seen = numpy.zeros(512, bool)
    seen[numpy.concatenate([windows.left_hashed.ravel(), windows.right_hashed.ravel()])] = True
    moved = module.bigram_corrections.weight.detach().abs().sum(dim=1).numpy() > 0
    assert moved.any() and not moved[~seen].any()
    # Width folding reaches them: full- and half-width digits read the same rows.
    full, half = (
        doc_windows([nlp.make_doc(text)], module.vocab, module.bigram_vocab, 8, 6, None, 512)
        for text in ("１２月", "12月")
    )
    assert numpy.array_equal(full.left_hashed, half.left_hashed)
    loaded = spacy.blank("zh").from_config(nlp.config).from_bytes(nlp.to_bytes())
    assert torch.equal(
        char_bert_module(loaded.get_pipe("bert_crf_ner").model.get_ref("tok2vec")).bigram_corrections.weight,
        module.bigram_corrections.weight,
    )
    for got, want in zip(emissions(loaded, TEXTS), emissions(nlp, TEXTS)):
        assert numpy.allclose(got, want, atol=1e-5)


def test_hashed_bigram_corrections_need_the_bigram_table(tiny_encoder, pd2014_docs):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder, encoder_settings={"bigram_buckets": 512}))
    with pytest.raises(ValueError, match=r"bigram_vectors is null\): set bigram_vectors, or bigram_buckets = 0"):
        nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:2]])


def test_a_bilstm_on_top_gives_the_vectors_and_is_saved_with_the_encoder(tiny_encoder, pd2014_docs):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config=tagger_config(tiny_encoder, encoder_settings={"lstm_width": 16}))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:8]]
    optimizer = nlp.initialize(lambda: examples, sgd=Adam(1e-2))
    tok2vec = nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec")
    lstm = char_bert_module(tok2vec).lstm
    weights = [lstm.forward_lstm.weight_hh_l0.detach().clone(), lstm.backward_lstm.weight_hh_l0.detach().clone()]
    nlp.update(examples, sgd=optimizer)
    assert not torch.equal(lstm.forward_lstm.weight_hh_l0, weights[0])
    assert not torch.equal(lstm.backward_lstm.weight_hh_l0, weights[1])
    docs = [nlp.make_doc(text) for text in TEXTS]
    assert [vectors.shape for vectors in tok2vec.predict(docs)] == [(len(doc), 16) for doc in docs]
    loaded = spacy.blank("zh").from_config(nlp.config).from_bytes(nlp.to_bytes())
    for got, want in zip(emissions(loaded, TEXTS), emissions(nlp, TEXTS)):
        assert numpy.allclose(got, want, atol=1e-5)


def test_saved_pipe_needs_neither_encoder_directory_nor_vectors(tiny_encoder, tiny_vectors, pd2014_docs, tmp_path):
    encoder = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    vectors = shutil.copy(tiny_vectors / "bigrams.npz", tmp_path / "bigrams.npz")
    nlp = trained_pipe(encoder, vectors, pd2014_docs)
    expected = emissions(nlp, TEXTS)
    nlp.to_disk(tmp_path / "nlp")
    data = nlp.to_bytes()
    shutil.rmtree(encoder)
    (tmp_path / "bigrams.npz").unlink()
    for loaded in (spacy.load(tmp_path / "nlp"), spacy.blank("zh").from_config(nlp.config).from_bytes(data)):
        for got, want in zip(emissions(loaded, TEXTS), expected):
            assert numpy.allclose(got, want, atol=1e-5)
        assert [e.text for e in loaded(TEXTS[0]).ents] == [e.text for e in nlp(TEXTS[0]).ents]


def test_long_text_is_read_in_windows(tiny_encoder, pd2014_docs):
    """A text of many windows gets one vector per character, and each character
    deep inside a window sees the same context as in that window alone."""
    nlp = trained_pipe(tiny_encoder, None, pd2014_docs, steps=1)
    text = "".join(doc.text for doc in pd2014_docs[:10])
    [rows] = emissions(nlp, [text])
    assert rows.shape[0] == len(nlp.make_doc(text))
    # Windows of 32 characters every 24: the first window owns characters 0..27.
    [alone] = emissions(nlp, [text[:32]])
    assert numpy.allclose(rows[:28], alone[:28], atol=1e-5)


def test_initialising_from_an_encoder_saved_by_the_project(tiny_bigram_encoder, tiny_vectors):
    """The from_pretrained path with an encoder the project built: its character vectors are in it."""
    keys, vectors = load_vectors(tiny_vectors / "chars.npz")
    vocab = CharVocab.from_file(tiny_bigram_encoder / "vocab.txt")
    from transformers import BertModel

    embeddings = BertModel.from_pretrained(tiny_bigram_encoder).get_input_embeddings().weight.detach().numpy()
    row = keys.index("北")
    expected = vectors[row] * (CHAR_VECTOR_STD / vectors.std())
    assert numpy.allclose(embeddings[vocab.token_id("北")], expected, atol=1e-4)


SHIPPED = ASSETS / "vectors"


def test_shipped_vectors_load_and_match_their_provenance():
    summary = json.loads((SHIPPED / "vectors.json").read_text(encoding="utf-8"))
    char_keys, char_vectors = load_vectors(SHIPPED / "chars.npz")
    bigram_keys, bigram_vectors = load_vectors(SHIPPED / "bigrams.npz")
    assert (len(char_keys), len(bigram_keys)) == (summary["char_vectors"], summary["bigram_vectors"])
    assert char_vectors.shape[1] == summary["settings"]["char_dim"] == 256
    assert bigram_vectors.shape[1] == summary["settings"]["bigram_dim"]
    assert summary["chars"] > 60_000_000
    # Keys are folded characters: no full-width digit, no upper-case letter.
    assert all(fold(key) == key for key in char_keys)
    assert "１" not in char_keys and "A" not in char_keys and "1" in char_keys
    assert numpy.isfinite(char_vectors).all() and numpy.isfinite(bigram_vectors).all()


def test_shipped_character_vectors_initialise_an_encoder(tmp_path):
    encoder = build_encoder(
        tmp_path / "encoder",
        config_path=ASSETS / "bert-base-chinese" / "config.json",
        vocab_path=ASSETS / "bert-base-chinese" / "vocab.txt",
        shape=EncoderShape(layers=1, hidden=256, heads=4, intermediate=512),
        char_vectors=SHIPPED / "chars.npz",
    )
    from transformers import BertModel

    embeddings = BertModel.from_pretrained(encoder).get_input_embeddings().weight.detach()
    vocab = CharVocab.from_file(encoder / "vocab.txt")

    # Characters that share a context in text are near each other; unrelated ones are not.
    def cosine(a, b):
        x, y = embeddings[vocab.token_id(a)], embeddings[vocab.token_id(b)]
        return float(x @ y / (x.norm() * y.norm()))

    assert cosine("北", "南") > cosine("北", "吃") + 0.1
    assert cosine("月", "日") > cosine("月", "猫") + 0.1


SHIPPED_ENCODER = ASSETS / "encoder"


@pytest.mark.parametrize(
    "text, answer",
    [
        ("中华人民共[MASK]国", "和"),
        ("今天天气很[MASK]。", "好"),
        ("他在北[MASK]大学读书", "京"),
        ("上海是一个大城[MASK]。", "市"),
        ("我们要坚持改革开[MASK]", "放"),
    ],
)
def test_the_shipped_encoder_fills_in_masked_characters(text, answer):
    """What pretraining taught it: common characters from their context, read one per position."""
    from transformers import BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(SHIPPED_ENCODER).eval()
    vocab = CharVocab.from_file(SHIPPED_ENCODER / "vocab.txt")
    before, after = text.split("[MASK]")
    ids = [vocab.cls_id, *vocab.ids(before), vocab.index["[MASK]"], *vocab.ids(after), vocab.sep_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, len(before) + 1]
    top = [vocab.tokens[i] for i in logits.topk(5).indices.tolist()]
    assert answer in top, top


def test_the_shipped_encoder_loads_in_the_pipe_with_the_bigrams():
    summary = json.loads((SHIPPED_ENCODER / "pretraining.json").read_text(encoding="utf-8"))
    assert summary["corpus_tokens"] > 60_000_000 and summary["steps"] > 0
    assert "python scripts/pretrain_encoder.py" in (SHIPPED_ENCODER / "PROVENANCE.md").read_text(encoding="utf-8")
    module = CharBert.from_pretrained(str(SHIPPED_ENCODER), str(SHIPPED / "bigrams.npz"))
    assert module.vocab.tokens == CharVocab.from_file(ASSETS / "bert-base-chinese" / "vocab.txt").tokens
    assert module.hidden_size == 256 and len(module.bigram_vocab) == len(load_vectors(SHIPPED / "bigrams.npz")[0]) + 1
    assert next(module.parameters()).dtype == torch.float32


def test_spacy_dropout_rate_reaches_every_dropout_of_the_encoder(tiny_encoder, pd2014_docs):
    """`[training] dropout` (the pipe's `drop`) sets the encoder's dropout, attention included."""
    nlp = trained_pipe(tiny_encoder, None, pd2014_docs, steps=1)
    tok2vec = nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec")
    module = char_bert_module(tok2vec)
    docs = [nlp.make_doc(text) for text in TEXTS]

    def training_pass(rate):
        set_dropout_rate(tok2vec, rate)
        vectors, _ = tok2vec.begin_update(docs)
        return numpy.concatenate(vectors)

    assert numpy.array_equal(training_pass(0.0), training_pass(0.0))
    assert not numpy.allclose(training_pass(0.4), training_pass(0.4))
    rates = {layer.p for layer in module.modules() if isinstance(layer, torch.nn.Dropout)}
    rates |= {layer.dropout_prob for layer in module.modules() if hasattr(layer, "dropout_prob")}
    assert rates == {0.4}
    nlp.update([Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:2]], drop=0.15)
    assert {layer.p for layer in module.modules() if isinstance(layer, torch.nn.Dropout)} == {0.15}
