"""The BiLSTM between the encoder and the emissions: each Doc read over its own length, saved with its sizes."""

import numpy
import pytest
import torch
from thinc.api import Adam

from spacy_bert_crf.context import PackedBiLSTM, bilstm


def rows(lengths, width=6, seed=0):
    generator = numpy.random.default_rng(seed)
    return [generator.normal(size=(length, width)).astype("float32") for length in lengths]


def initialised(width=8, sample=None):
    layer = bilstm(width)
    layer.initialize(X=sample or rows([3]))
    return layer


def test_a_doc_reads_the_same_alone_and_beside_longer_ones():
    """Packed, the backward direction starts at each Doc's own last token, not in its padding."""
    layer = initialised()
    docs = rows([2, 7, 5])
    together = layer.predict(docs)
    for doc, vectors in zip(docs, together):
        [alone] = layer.predict([doc])
        assert vectors.shape == (len(doc), 8)
        numpy.testing.assert_allclose(vectors, alone, atol=1e-6)


def test_both_directions_see_the_whole_doc():
    layer = initialised()
    [doc] = rows([6])
    changed_last, changed_first = doc.copy(), doc.copy()
    changed_last[-1] += 1.0
    changed_first[0] += 1.0
    [base], [last], [first] = (layer.predict([x]) for x in (doc, changed_last, changed_first))
    # The first token's backward half hears of the last token, and the last token's forward half of the first.
    assert not numpy.allclose(base[0, 4:], last[0, 4:]) and numpy.allclose(base[0, :4], last[0, :4])
    assert not numpy.allclose(base[-1, :4], first[-1, :4]) and numpy.allclose(base[-1, 4:], first[-1, 4:])


def test_gradients_reach_the_inputs_and_the_weights():
    layer = initialised()
    docs = rows([4, 2])
    vectors, backprop = layer.begin_update(docs)
    d_inputs = backprop([numpy.ones_like(v) for v in vectors])
    assert [d.shape for d in d_inputs] == [d.shape for d in docs]
    # Positions past a Doc's end are padding; the gradient of a real input is not zero.
    assert all(numpy.abs(d).sum(axis=1).min() > 0 for d in d_inputs)
    before = {name: p.detach().clone() for name, p in layer.shims[0]._model.named_parameters()}
    layer.finish_update(Adam(0.01))
    after = dict(layer.shims[0]._model.named_parameters())
    assert all(not torch.equal(before[name], after[name]) for name in before)


def test_saved_layer_rebuilds_itself_from_its_bytes():
    layer = initialised(width=10, sample=rows([3], width=5))
    expected = layer.predict(rows([4], width=5, seed=1))
    fresh = bilstm(10)
    fresh.from_bytes(layer.to_bytes())
    assert fresh.get_dim("nI") == 5
    numpy.testing.assert_allclose(fresh.predict(rows([4], width=5, seed=1))[0], expected[0], atol=1e-6)


def test_an_odd_width_is_refused():
    with pytest.raises(ValueError, match="two halves"):
        PackedBiLSTM(4, 5)
