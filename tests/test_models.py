"""The models built here: the synthetic sparse model's block pattern (SPARSEQA_SYNTHETIC_PATTERN), its cache name and
card, and prune_blocks in either orientation and by either method."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparseqa.blocks import block_magnitudes, describe, zero_block_share
from sparseqa.cli import main
from sparseqa.models import (
    SYNTHETIC_PATTERN_ENV,
    ModelLoadError,
    SYNTHETIC_SPARSE,
    build_synthetic,
    card_for,
    prune_blocks,
    resolve,
    synthetic_name,
    synthetic_pattern,
)
from sparseqa.sparsity import inspect_model

ROOT = Path(__file__).resolve().parents[1]

OTHER = {"1x4": "4x1", "4x1": "1x4"}


def small_bert():
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return BertForQuestionAnswering(config).eval()


def encoder_weights(model) -> dict[str, np.ndarray]:
    return {
        name: parameter.detach().numpy().copy()
        for name, parameter in model.named_parameters()
        if ".encoder." in name and name.endswith(".weight") and parameter.ndim == 2
    }


def test_the_synthetic_pattern_is_the_seed_models_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv(SYNTHETIC_PATTERN_ENV, raising=False)
    assert synthetic_pattern() == "4x1"
    monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, "1x4")
    assert synthetic_pattern() == "1x4"
    monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, " 4x1 ")
    assert synthetic_pattern() == "4x1"


@pytest.mark.parametrize("value", ["2x2", "1X4", "4 x 1", "row"])
def test_a_wrong_synthetic_pattern_is_a_one_line_error_naming_the_choices(monkeypatch, value):
    monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, value)
    with pytest.raises(ValueError) as raised:
        synthetic_pattern()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{SYNTHETIC_PATTERN_ENV}={value!r} is not a block orientation")
    assert describe("1x4") in message and describe("4x1") in message


def test_a_wrong_synthetic_pattern_stops_the_cli_in_one_line_before_building(monkeypatch, capsys, sparseqa_cache):
    monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, "2x2")
    assert main(["inspect", "--synthetic"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {SYNTHETIC_PATTERN_ENV}='2x2' is not a block orientation")
    assert not any((sparseqa_cache / "models").glob("synthetic-sparse*"))


def test_the_cache_name_and_the_card_name_the_pattern_and_the_method(monkeypatch):
    names, labels, dense_names = {}, {}, set()
    for pattern in ("4x1", "1x4"):
        monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, pattern)
        names[pattern] = synthetic_name(sparse=True)
        dense_names.add(synthetic_name(sparse=False))
        card = card_for(SYNTHETIC_SPARSE)
        labels[pattern] = card.label
        assert f"-{pattern}-magnitude-" in names[pattern]
        assert card.label == f"sparse 80% {pattern} (synthetic)"
        assert describe(pattern) in card.description and "mean |w|" in card.description
    assert names["4x1"] != names["1x4"] and labels["4x1"] != labels["1x4"]
    assert len(dense_names) == 1 and "magnitude" not in dense_names.pop(), "the dense model has no pattern to name"


def test_the_synthetic_tokenizer_is_the_same_in_every_process():
    # tokenizers' WordPiece trainer gave each process its own vocabulary (huggingface/tokenizers#1794), and with it
    # other calibration and other logits for the same weights.
    script = "import json; from sparseqa.models import build_tokenizer; print(json.dumps(build_tokenizer().get_vocab()))"
    command = [sys.executable, "-c", script]
    runs = [subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT) for _ in range(2)]
    vocabs = [json.loads(run.stdout) for run in runs]
    assert vocabs[0] == vocabs[1]
    assert {"[CLS]", "[SEP]", "##e", "the"} <= vocabs[0].keys()


@pytest.mark.parametrize("pattern", ["4x1", "1x4"])
def test_the_synthetic_builder_prunes_the_pattern_it_names(pattern, monkeypatch, tmp_path):
    # BERT-base's shape costs a minute and 400 MB per build; the builder's code is the same at any size.
    import transformers

    real = transformers.BertConfig
    monkeypatch.setattr(
        transformers,
        "BertConfig",
        lambda vocab_size: real(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64),
    )  # fmt: skip
    monkeypatch.setenv(SYNTHETIC_PATTERN_ENV, pattern)
    monkeypatch.setenv("SPARSEQA_CACHE", str(tmp_path))

    local = resolve(SYNTHETIC_SPARSE)
    assert local.path == tmp_path / "models" / synthetic_name(sparse=True)
    assert json.loads((local.path / "sparseqa.json").read_text()) == {
        "synthetic": True, "sparse": True, "seed": 0, "pattern": pattern, "pruning": "magnitude",
    }  # fmt: skip
    report = inspect_model(SYNTHETIC_SPARSE)
    assert report.pattern == pattern
    assert report.block_share(pattern) == pytest.approx(0.8, abs=0.01)
    assert report.block_share(OTHER[pattern]) < 0.55
    assert build_synthetic(sparse=True) == local.path, "built once, then reused"


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_magnitude_pruning_zeroes_the_lowest_mean_magnitude_blocks_of_encoder_linears_only(orientation):
    model = small_bert()
    before = encoder_weights(model)
    untouched = model.qa_outputs.weight.detach().clone()
    prune_blocks(model, 0.8, orientation, "magnitude")
    after = encoder_weights(model)

    assert len(after) == 2 * 6
    for name, weight in after.items():
        assert zero_block_share(weight, orientation) == pytest.approx(0.8, abs=0.01), name
        assert zero_block_share(weight, OTHER[orientation]) < 0.55, name
        scores = block_magnitudes(before[name], orientation)
        pruned = block_magnitudes(weight, orientation) == 0
        assert scores[~pruned].min() >= scores[pruned].max(), name
        assert np.array_equal(weight[weight != 0], before[name][weight != 0]), "kept weights are unchanged"
    assert model.qa_outputs.weight.equal(untouched)


@pytest.mark.parametrize("orientation", ["1x4", "4x1"])
def test_random_pruning_depends_on_the_seed(orientation):
    masks = {}
    for seed in (0, 0, 1):
        model = small_bert()
        prune_blocks(model, 0.8, orientation, "random", seed=seed)
        weights = encoder_weights(model)
        assert all(zero_block_share(w, orientation) == pytest.approx(0.8, abs=0.01) for w in weights.values())
        masks.setdefault(seed, []).append(np.concatenate([(w == 0).ravel() for w in weights.values()]))
    assert np.array_equal(masks[0][0], masks[0][1]) and not np.array_equal(masks[0][0], masks[1][0])


@pytest.mark.parametrize("model", ["/nonexistent/model", "./no-such-model", "~/no-such-sparseqa-model", "two words"])
def test_a_missing_directory_fails_without_asking_the_hub(model):
    with pytest.raises(ModelLoadError) as failure:
        resolve(model)
    assert str(failure.value) == str(
        ModelLoadError(model, "there is no such directory, and it is not a hub id (name or org/name)")
    )


def test_a_directory_is_found_through_a_home_relative_path(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    monkeypatch.setenv("HOME", str(tmp_path))
    local = resolve("~/model")
    assert local.path == (tmp_path / "model").resolve()
