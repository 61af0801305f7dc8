"""The trained tiny model: its generated data, its pruning, its reproducibility, and the answers every path gives.

The quality tests run ``eval --compare`` once per block pattern on the trained model's held-out questions, as a user
would: the model pruned as the seed model (4x1: 4 consecutive outputs × 1 input) and the one pruned 1x4 (1 output ×
4 consecutive inputs) each answer well above chance, OpenVINO fp32 gives PyTorch fp32's answers (>= 99%), and int8
keeps them (>= 95% agreement, <= 2 F1 lost), on OpenVINO's kernels and, where they run, on sparseqa's sparse
kernels alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparseqa import qadata
from sparseqa.blocks import block_magnitudes, describe, zero_block_share, zero_blocks
from sparseqa.decoding import MAX_LENGTH
from sparseqa.evaluate import load_squad
from sparseqa.models import build_tokenizer, build_vocab
from sparseqa.tinytrain import HELDOUT_FILE, block_mask, train_tiny

REPO = Path(__file__).resolve().parent.parent
TRAINED = {"4x1": "trained_tiny_model", "1x4": "trained_tiny_model_1x4"}


def test_every_answer_is_the_passage_text_at_its_offset():
    passages = qadata.generate("test", 60)
    questions = [(passage, q) for passage in passages for q in passage.questions]
    assert len(questions) > 200
    for passage, q in questions:
        assert passage.context[q.answer_start : q.answer_start + len(q.answer)] == q.answer
        assert 1 <= len(q.answer.split()) <= 5
    assert {len(q.answer.split()) for _, q in questions} == {1, 2, 3, 4, 5}


def test_the_same_seed_generates_the_same_passages_and_another_seed_others():
    assert qadata.generate("a", 5) == qadata.generate("a", 5)
    assert qadata.generate("a", 5) != qadata.generate("b", 5)


def test_vocabulary_is_the_same_every_time_and_reads_generated_text_without_unknowns():
    texts = [passage.context for passage in qadata.generate("vocab", 10)]
    vocab = build_vocab(texts)
    assert vocab == build_vocab(list(reversed(texts)))
    tokenizer = build_tokenizer(vocab)
    encoding = tokenizer(texts[0], "Where was Zora Quarmark born?", return_offsets_mapping=True)
    assert tokenizer.unk_token_id not in encoding["input_ids"]
    # Unseen text still tokenizes, into word pieces rather than [UNK].
    assert tokenizer.tokenize("Zyxwv") == ["z", "##y", "##x", "##w", "##v"]


@pytest.mark.parametrize("pattern", ["4x1", "1x4"])
def test_block_mask_zeroes_exactly_the_share_of_blocks_with_the_lowest_mean_absolute_weight(pattern):
    import torch

    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mask = block_mask(weight, 0.8, pattern)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    keep = mask.numpy()
    pruned = zero_blocks(keep, pattern)
    assert (pruned | zero_blocks(~keep, pattern)).all(), "a block is kept or pruned whole"
    assert int(pruned.sum()) == round(0.8 * pruned.size)
    scores = block_magnitudes(weight.detach().numpy(), pattern)
    assert scores[~pruned].min() >= scores[pruned].max()


def test_the_default_pattern_is_the_seed_models():
    import torch

    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    assert zero_block_share(block_mask(weight, 0.8).numpy() * weight.numpy(), "4x1") == pytest.approx(0.8, abs=0.01)


def test_two_builds_with_one_seed_are_identical(tmp_path):
    import torch
    from safetensors.torch import load_file

    first = train_tiny(tmp_path / "first", seed=3, steps=3, progress=False, score=False)
    second = train_tiny(tmp_path / "second", seed=3, steps=3, progress=False, score=False)
    assert first.pattern == "4x1" and first.block_sparsity == pytest.approx(0.8, abs=0.001)
    assert f"80.0% of {describe('4x1')}" in "\n".join(first.lines())
    weights = [load_file(summary.out / "model.safetensors") for summary in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    for name in (HELDOUT_FILE, "tokenizer.json"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes()


def test_held_out_set_has_a_few_hundred_questions_some_beyond_one_window(trained_tiny_model):
    from transformers import AutoTokenizer

    questions = load_squad(trained_tiny_model / HELDOUT_FILE)
    assert 200 <= len(questions) <= 400
    tokenizer = AutoTokenizer.from_pretrained(trained_tiny_model)
    long_questions = [
        q for q in questions if len(tokenizer(q.question, q.context)["input_ids"]) > MAX_LENGTH
    ]
    assert len(long_questions) >= 30
    # Answers late in long passages too: the second window has to find them.
    assert any(q.context.index(q.answers[0]) > len(q.context) * 0.7 for q in long_questions)


@pytest.mark.parametrize("pattern", ["4x1", "1x4"])
def test_trained_model_is_80_percent_block_sparse_in_its_pattern_in_every_encoder_linear(pattern, request):
    from sparseqa.sparsity import inspect_model

    model = request.getfixturevalue(TRAINED[pattern])
    report = inspect_model(str(model))
    assert len(report.layers) == 4 * 6
    assert report.pattern == pattern
    assert report.block_share(pattern) == pytest.approx(0.8, abs=0.001)
    assert min(report.per_linear()[f"{pattern} blocks zero"]) >= 0.799
    assert json.loads((model / "sparseqa.json").read_text())["pattern"] == pattern


def test_the_trained_models_cache_key_names_the_pattern(trained_tiny_model, trained_tiny_model_1x4):
    assert "-4x1-magnitude-seed0" in trained_tiny_model.name
    assert "-1x4-magnitude-seed0" in trained_tiny_model_1x4.name


@pytest.fixture(scope="module", params=["4x1", "1x4"])
def compared(request, tmp_path_factory) -> dict:
    """``eval --compare`` on the held-out questions of the model trained and pruned in one pattern, the trained model
    as both the sparse and the "dense" model: PyTorch fp32, OpenVINO fp32, and OpenVINO int8 on OpenVINO's and (where
    they run) on sparseqa's kernels, all of the same weights. Its stdout, stderr and the JSON it wrote."""
    pattern = request.param
    trained = request.getfixturevalue(TRAINED[pattern])
    out = tmp_path_factory.mktemp(f"compare-{pattern}") / "compare.json"
    model = str(trained)
    result = subprocess.run(
        [sys.executable, "-m", "sparseqa", "eval", "--compare", "--model", model, "--dense-model", model,
         "--data", str(trained / HELDOUT_FILE), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    pytorch, openvino, int8, *sparse_kernels = written["configurations"]
    return {
        "pattern": pattern,
        "model": trained,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "pytorch": pytorch,
        "openvino": openvino,
        "int8": int8,
        "sparse_kernels": sparse_kernels[0] if sparse_kernels else None,
        "n": written["n"],
    }


def test_eval_compare_prints_every_configuration_of_the_trained_model(compared):
    trained = compared["model"]
    lines = compared["stdout"].splitlines()
    header = next(line for line in lines if line.strip().startswith("configuration"))
    rows = lines[lines.index(header) + 1 : lines.index(header) + 5]
    assert [row.split("·")[0].strip() for row in rows] == [trained.name] * len(rows)
    assert "pytorch fp32" in rows[0] and "openvino fp32" in rows[1]
    assert "openvino int8" in rows[2] and "sparseqa kernels" not in rows[2]
    # sparseqa's kernels run the model of either pattern, each on the kernels of its own orientation.
    assert "openvino int8" in rows[3] and "sparseqa kernels" in rows[3]
    assert compared["sparse_kernels"]["kernels"] == "sparseqa"
    assert compared["n"] == len(load_squad(trained / HELDOUT_FILE))


EXACT_MATCH_FLOOR = 70


def test_pruned_model_answers_many_held_out_questions_exactly(compared):
    assert compared["pytorch"]["exact_match"] >= EXACT_MATCH_FLOOR
    assert compared["openvino"]["exact_match"] >= EXACT_MATCH_FLOOR


def test_openvino_fp32_gives_pytorch_fp32_answers(compared):
    # Agreement is measured against OpenVINO fp32, the table's reference.
    assert compared["pytorch"]["agreement"] >= 99
    assert compared["openvino"]["agreement"] == 100


@pytest.mark.parametrize("configuration", ["int8", "sparse_kernels"], ids=["openvino-kernels", "sparseqa-kernels"])
def test_openvino_int8_keeps_the_fp32_answers(compared, configuration):
    assert compared[configuration]["agreement"] >= 95
    assert compared[configuration]["f1"] >= compared["openvino"]["f1"] - 2
