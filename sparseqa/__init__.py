"""Sparse BERT SQuAD v1.1 question-answering demo."""
