"""A small 80% block-sparse BERT QA model, trained here on CPU in minutes: a test instrument with real answers.

``train_tiny`` generates an extractive-QA set (``qadata``), builds a WordPiece vocabulary from it, trains a 4-layer,
128-wide BERT (4 heads, 512 intermediate) for question answering from scratch, prunes every encoder Linear gradually
to 80% all-zero blocks and fine-tunes it with the mask fixed. The blocks are the seed model's by default, 4x1
(4 consecutive outputs × 1 input), or 1x4 (1 output × 4 consecutive inputs); either way they are ranked by their
mean |w| and the lowest zeroed, as Model-Compression-Research-Package prunes (``blocks.prune_mask``). Its answers
mean something, so quantization, decoding and kernel changes can be judged on answers, not only on logits; its EM/F1
say nothing about the real model's.

The same seed gives the same data, vocabulary and weights (on the same machine and library versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import blocks, qadata
from .calibration import MODEL_PAIRS_FILE
from .decoding import MAX_LENGTH, STRIDE
from .models import build_tokenizer, build_vocab, publish

HIDDEN = 128
LAYERS = 4
HEAD_SIZE = 32  # 4 heads: more attention patterns to learn in parallel; the Linear shapes do not depend on it
SPARSITY = 0.8
DEFAULT_PATTERN = "4x1"  # the seed model's (see blocks)
BATCH_SIZE = 16
LEARNING_RATE = 1e-3
DEFAULT_STEPS = 2500
# Dense training, then pruning ramped up to SPARSITY, then fine-tuning with the mask fixed (shares of the steps).
DENSE_SHARE, PRUNE_SHARE = 0.55, 0.2
MASK_UPDATES = 10
LONG_PASSAGE_QUESTIONS = 1
HELDOUT_PASSAGES = 40
HELDOUT_QUESTIONS_PER_PASSAGE = 8
HELDOUT_FILE = "heldout-squad-v1.1.json"
CALIBRATION_PAIRS = 300
# Code elsewhere that decides the weights: the pruning functions and the vocabulary.
SHARED_CODE = (blocks.prune_mask, blocks.block_magnitudes, blocks.block_view, build_vocab)


@dataclass(frozen=True)
class TrainSummary:
    """What a build produced: where, from what, how long it took, and how well it answers its held-out questions."""

    out: Path
    seed: int
    steps: int
    train_questions: int
    heldout_questions: int
    long_heldout_passages: int
    pattern: str
    block_sparsity: float
    exact_match: float | None
    f1: float | None
    seconds: float

    @property
    def heldout_path(self) -> Path:
        """The held-out questions, a SQuAD v1.1 file beside the model."""
        return self.out / HELDOUT_FILE

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        lines = [
            f"wrote {self.out} (seed {self.seed}, {self.steps} steps on {self.train_questions:,} generated questions, "
            f"{self.seconds:.0f} s)",
            f"  encoder Linear blocks all zero: {self.block_sparsity:.1%} of {blocks.describe(self.pattern)}",
            f"  held-out questions: {self.heldout_questions} in {self.heldout_path} "
            f"({self.long_heldout_passages} passages longer than one {MAX_LENGTH}-token window)",
        ]
        if self.exact_match is not None:
            lines.append(f"  PyTorch fp32 on them: EM {self.exact_match:.2f}, F1 {self.f1:.2f}")
        return lines


def code_version() -> str:
    """A short hash of the code that decides the model's weights: this module, the data generator, the pruning
    functions of ``blocks`` (not the whole module, which also holds the report's vocabulary), the vocabulary builder,
    torch's version."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for module in (qadata, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    for function in SHARED_CODE:
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:12]


def _heldout(seed: int) -> list[qadata.Passage]:
    """The held-out passages, each with a few of its questions chosen at random (answers anywhere in the passage)."""
    rng = random.Random(f"sparseqa-heldout-questions-{seed}")
    passages = qadata.generate(f"sparseqa-heldout-{seed}", HELDOUT_PASSAGES)
    chosen = []
    for passage in passages:
        asked = rng.sample(passage.questions, min(HELDOUT_QUESTIONS_PER_PASSAGE, len(passage.questions)))
        chosen.append(dataclasses.replace(passage, questions=tuple(sorted(asked, key=lambda q: q.answer_start))))
    return chosen


def _training_passages(seed: int, steps: int) -> list[qadata.Passage]:
    """Generated passages for about ``steps`` batches. A long passage keeps only LONG_PASSAGE_QUESTIONS of its
    questions: each costs two full-length windows, while a short passage's cost a third of one each, and the long
    windows are there to train the positions past the short ones and the windows without the answer."""
    rng = random.Random(f"sparseqa-train-questions-{seed}")
    passages = qadata.generate(f"sparseqa-train-{seed}", max(8, math.ceil(steps * BATCH_SIZE / 10)))
    return [
        dataclasses.replace(passage, questions=tuple(rng.sample(passage.questions, LONG_PASSAGE_QUESTIONS)))
        if passage.long
        else passage
        for passage in passages
    ]


def _features(tokenizer, passages: list[qadata.Passage]) -> list[tuple[list[int], list[int], int, int]]:
    """One training window per question and window, as run_qa makes them: (input ids, token types, start, end).

    The windows are the ones answering uses (MAX_LENGTH tokens, STRIDE overlap); a window that does not hold the
    whole answer points at [CLS], so the model learns to give low scores to windows without the answer.
    """
    pairs = [(q, passage.context) for passage in passages for q in passage.questions]
    encoding = tokenizer(
        [q.question for q, _ in pairs],
        [context for _, context in pairs],
        truncation="only_second",
        max_length=MAX_LENGTH,
        stride=STRIDE,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    features = []
    for window, pair_index in enumerate(encoding["overflow_to_sample_mapping"]):
        question = pairs[pair_index][0]
        answer_start, answer_end = question.answer_start, question.answer_start + len(question.answer)
        sequence_ids = encoding.sequence_ids(window)
        offsets = encoding["offset_mapping"][window]
        passage_tokens = [i for i, sequence in enumerate(sequence_ids) if sequence == 1]
        start = end = 0
        if offsets[passage_tokens[0]][0] <= answer_start and offsets[passage_tokens[-1]][1] >= answer_end:
            start = next(i for i in passage_tokens if offsets[i][1] > answer_start)
            end = next(i for i in reversed(passage_tokens) if offsets[i][0] < answer_end)
        features.append((encoding["input_ids"][window], encoding["token_type_ids"][window], start, end))
    return features


def _batches(features: list, steps: int, rng: random.Random) -> list[list]:
    """``steps`` batches of BATCH_SIZE windows, epoch after epoch; each batch holds windows of similar length."""
    batches: list[list] = []
    while len(batches) < steps:
        order = list(features)
        rng.shuffle(order)
        chunk = BATCH_SIZE * 16
        epoch = []
        for begin in range(0, len(order), chunk):
            group = sorted(order[begin : begin + chunk], key=lambda feature: len(feature[0]))
            epoch += [group[i : i + BATCH_SIZE] for i in range(0, len(group), BATCH_SIZE)]
        rng.shuffle(epoch)
        batches += epoch
    return batches[:steps]


def _tensors(batch: list) -> dict:
    import torch

    width = max(len(ids) for ids, *_ in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.long)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    for row, (ids, types, _, _) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        token_type_ids[row, : len(ids)] = torch.tensor(types)
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "start_positions": torch.tensor([start for *_, start, _ in batch]),
        "end_positions": torch.tensor([end for *_, end in batch]),
    }


def encoder_linears(model) -> list:
    """Every Linear inside the encoder (query, key, value, attention output, intermediate, output of each layer)."""
    import torch

    return [
        module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".encoder." in f".{name}."
    ]


def block_mask(weight, sparsity: float, pattern: str = DEFAULT_PATTERN):
    """Keep-mask (a bool tensor of ``weight``'s shape) zeroing the ``sparsity`` share of ``weight``'s blocks of
    ``pattern`` with the lowest mean |w| (``blocks.prune_mask``; blocks already zero tie, broken in a fixed order)."""
    import torch

    return torch.from_numpy(blocks.prune_mask(weight.detach().numpy(), sparsity, pattern, "magnitude"))


def _sparsity_at(step: int, steps: int) -> float:
    """The pruning schedule: none while dense, then a cubic ramp (fast at first, as in Zhu & Gupta 2017) to
    SPARSITY in MASK_UPDATES stages, then SPARSITY."""
    prune_begin, prune_steps = round(DENSE_SHARE * steps), max(1, round(PRUNE_SHARE * steps))
    if step < prune_begin:
        return 0.0
    stage = min(MASK_UPDATES, (step - prune_begin) * MASK_UPDATES // prune_steps + 1)
    return SPARSITY * (1 - (1 - stage / MASK_UPDATES) ** 3)


def train_tiny(
    out: Path,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    progress: bool = True,
    threads: int | None = None,
    score: bool = True,
    pattern: str = DEFAULT_PATTERN,
) -> TrainSummary:
    """Generate the data, train, prune (blocks of ``pattern``, "4x1" or "1x4") and fine-tune; save model, tokenizer
    and held-out questions into ``out``; with ``score``, answer the held-out questions with the saved model (PyTorch
    fp32) for the summary.

    ``out`` must not exist or be empty. ``threads`` (default: torch's) is the training's thread count: results are
    reproducible for one thread count, not across them.
    """
    import torch
    from tqdm import tqdm
    from transformers import BertConfig, BertForQuestionAnswering

    blocks.check(pattern)
    began = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    heldout = _heldout(seed)
    # Passages until there are enough questions for every step's batch once (more steps see each one again).
    train = _training_passages(seed, steps)
    texts = [passage.context for passage in train + heldout]
    texts += [q.question for passage in train + heldout for q in passage.questions]
    vocab = build_vocab(texts)
    tokenizer = build_tokenizer(vocab)
    features = _features(tokenizer, train)
    batches = _batches(features, steps, random.Random(f"sparseqa-batches-{seed}"))

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HIDDEN // HEAD_SIZE,
        intermediate_size=4 * HIDDEN,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,  # every batch is new generated text: nothing to overfit, and training is short
        attention_probs_dropout_prob=0.0,
    )
    model = BertForQuestionAnswering(config).train()
    _sinusoidal_positions(model.bert.embeddings.position_embeddings.weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / max(1, steps - warmup)))
    )
    linears = encoder_linears(model)
    masks: list | None = None
    sparsity, smoothed_loss = 0.0, None
    with tqdm(batches, desc="train-tiny", unit="step", file=sys.stderr, disable=not progress) as bar:
        for step, batch in enumerate(bar):
            target = _sparsity_at(step, steps)
            if target != sparsity:
                sparsity = target
                masks = [block_mask(linear.weight, sparsity, pattern) for linear in linears]
                _apply(linears, masks)
            loss = model(**_tensors(batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if masks is not None:
                _apply(linears, masks)  # the optimizer moved pruned weights (momentum, weight decay): zero them again
            smoothed_loss = loss.item() if smoothed_loss is None else 0.95 * smoothed_loss + 0.05 * loss.item()
            bar.set_postfix_str(f"loss {smoothed_loss:.3f} · sparsity {sparsity:.0%}", refresh=False)
    if sparsity != SPARSITY:  # fewer steps than pruning stages: prune the rest at once so the model is always 80%
        _apply(linears, [block_mask(linear.weight, SPARSITY, pattern) for linear in linears])

    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    heldout_questions = qadata.write_squad(heldout, out / HELDOUT_FILE)
    # int8 calibrates on the model's own kind of text, as the hub models calibrate on SQuAD train.
    calibration = [[passage.questions[0].question, passage.context] for passage in train[:CALIBRATION_PAIRS]]
    (out / MODEL_PAIRS_FILE).write_text(json.dumps(calibration, ensure_ascii=False), encoding="utf-8")
    record = {"trained": True, "seed": seed, "steps": steps, "sparsity": SPARSITY, "pattern": pattern}
    record["pruning"] = "magnitude"  # blocks ranked by mean |w|
    record["code"] = code_version()
    (out / "sparseqa.json").write_text(json.dumps(record))
    exact_match, f1 = _heldout_scores(out) if score else (None, None)
    long_passages = sum(
        len(tokenizer(passage.context, add_special_tokens=False)["input_ids"]) > MAX_LENGTH for passage in heldout
    )
    return TrainSummary(
        out=out,
        seed=seed,
        steps=steps,
        train_questions=sum(len(passage.questions) for passage in train),
        heldout_questions=heldout_questions,
        long_heldout_passages=long_passages,
        pattern=pattern,
        block_sparsity=_block_sparsity(linears, pattern),
        exact_match=exact_match,
        f1=f1,
        seconds=time.perf_counter() - began,
    )


def _sinusoidal_positions(weight) -> None:
    """Start the learned position embeddings as the Transformer's sinusoids (scaled to the word embeddings' size).

    From random positions, the "the word after 'born in'" patterns answers need take thousands of steps to appear;
    from sinusoids, attending a fixed distance back is one linear map away.
    """
    import torch

    positions, width = weight.shape
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * frequencies[None, :]
    table = torch.stack((angles.sin(), angles.cos()), dim=2).reshape(positions, width)
    with torch.no_grad():
        weight.copy_(table * (weight.std() * math.sqrt(2)))


def _apply(linears: list, masks: list) -> None:
    import torch

    with torch.no_grad():
        for linear, mask in zip(linears, masks):
            linear.weight.mul_(mask)


def _block_sparsity(linears: list, pattern: str) -> float:
    zero = total = 0
    for linear in linears:
        zero_blocks = blocks.zero_blocks(linear.weight.detach().numpy(), pattern)
        zero += int(zero_blocks.sum())
        total += zero_blocks.size
    return zero / total


def _heldout_scores(directory: Path) -> tuple[float, float]:
    """EM and F1 of the saved model on PyTorch fp32 over its held-out questions, through the project's eval."""
    from .evaluate import evaluate_engine, load_squad
    from .runtimes import load_engine

    engine = load_engine(str(directory), "pytorch", "fp32")
    run = evaluate_engine(engine, load_squad(directory / HELDOUT_FILE), str(directory / HELDOUT_FILE), progress=False)
    return run.exact_match, run.f1


def cached_tiny_model(
    root: Path, *, seed: int = 0, pattern: str = DEFAULT_PATTERN, report: Callable[[str], None] | None = None
) -> Path:
    """The trained tiny model for ``seed`` and block ``pattern`` under ``root``, built on first use and then reused.

    Keyed by ``code_version()``, pattern and seed, so a change to the data, the training or the pruning builds a new
    one. Written atomically: a half-built directory is never reused.
    """
    target = root / f"tiny-squad-{code_version()}-{blocks.check(pattern)}-magnitude-seed{seed}"
    if _is_trained(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        summary = train_tiny(staging, seed=seed, pattern=pattern)
        if report:
            report("\n".join(summary.lines()))
        publish(staging, target, _is_trained)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_trained(directory: Path) -> bool:
    names = ("model.safetensors", "tokenizer.json", HELDOUT_FILE, "sparseqa.json")
    return all((directory / name).is_file() for name in names)
