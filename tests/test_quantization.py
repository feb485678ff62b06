"""The pipe's `quantize` load-time setting (spacy_bert_crf/quantization.py)."""

import numpy
import pytest
import spacy
from spacy.training import Example
from torch import nn
from torch.ao.nn.quantized import dynamic as quantized_dynamic

from conftest import tagger_config
from spacy_bert_crf.lab.serving import load_pipeline

QUANTIZE = {"components": {"bert_crf_ner": {"quantize": True}}}


@pytest.fixture(scope="module")
def model(tiny_pipeline):
    return tiny_pipeline


def encoder_module(nlp):
    return nlp.get_pipe("bert_crf_ner").model.get_ref("tok2vec").shims[0]._model


def test_quantize_makes_the_encoders_linear_layers_int8(model):
    fp32 = spacy.load(model)
    int8 = spacy.load(model, config=QUANTIZE)
    assert not fp32.get_pipe("bert_crf_ner").quantized and int8.get_pipe("bert_crf_ner").quantized
    float_linears = [m for m in encoder_module(fp32).modules() if type(m) is nn.Linear]
    int8_linears = [m for m in encoder_module(int8).modules() if isinstance(m, quantized_dynamic.Linear)]
    assert float_linears and len(int8_linears) == len(float_linears)
    assert not [m for m in encoder_module(int8).modules() if type(m) is nn.Linear]


def test_quantized_emissions_follow_the_fp32_ones(model, pd2014_docs):
    docs = [spacy.blank("zh").make_doc(doc.text) for doc in pd2014_docs[:16]]
    fp32, int8 = (nlp.get_pipe("bert_crf_ner").model for nlp in (spacy.load(model), spacy.load(model, config=QUANTIZE)))
    exact = numpy.concatenate(fp32.predict(docs))
    approximate = numpy.concatenate(int8.predict(docs))
    assert exact.shape == approximate.shape
    assert numpy.corrcoef(exact.ravel(), approximate.ravel())[0, 1] > 0.99
    assert not numpy.array_equal(exact, approximate), "quantize changed nothing"


def test_a_quantized_pipe_tags_and_refuses_to_train_or_save(model, pd2014_docs, tmp_path):
    nlp = load_pipeline(str(model), quantize=True)
    docs = list(nlp.pipe(doc.text for doc in pd2014_docs[:8]))
    assert all(len(doc.spans["ents"]) == len(doc.ents) for doc in docs)
    pipe = nlp.get_pipe("bert_crf_ner")
    with pytest.raises(ValueError, match="quantize = true.*to_disk"):
        nlp.to_disk(tmp_path / "saved")
    with pytest.raises(ValueError, match="update"):
        pipe.update([Example(nlp.make_doc(pd2014_docs[0].text), pd2014_docs[0])])


def test_training_with_quantize_is_refused(tiny_encoder, pd2014_docs):
    nlp = spacy.blank("zh")
    nlp.add_pipe("bert_crf_ner", config={**tagger_config(tiny_encoder), "quantize": True})
    with pytest.raises(ValueError, match="train with quantize = false"):
        nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in pd2014_docs[:4]])


def test_load_pipeline_names_what_is_missing(tmp_path):
    with pytest.raises(OSError, match="neither a directory nor an installed package"):
        load_pipeline(str(tmp_path / "nothing"), quantize=True)
