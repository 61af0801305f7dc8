"""End-to-end smoke of the backend on the tiny models: both runtimes answer with exact passage substrings."""

from sparseqa.runtimes import load_engine


def test_openvino_and_pytorch_answer_with_passage_substrings(tiny_sparse_model):
    passage = "The Kestrel probe landed on Sarrow Flats after a journey of seven years."
    for runtime, precision in (("pytorch", "fp32"), ("openvino", "fp32"), ("openvino", "int8")):
        answer = load_engine(str(tiny_sparse_model), runtime, precision).answer("Where did it land?", passage)
        assert passage[answer.start : answer.end] == answer.text
        assert answer.text
