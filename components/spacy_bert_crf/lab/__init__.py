"""The project's lab: what builds on the pipe but `spacy.load` never needs.

Encoders and vectors built offline, masked-LM pretraining, the report's
experiments, figures, the report itself, the displaCy page and the
benchmarks. Its dependencies (matplotlib, tqdm, gensim; typer for the scripts)
come with `pip install spacy-bert-crf[lab]`; the runtime package above never
imports from here.
"""
