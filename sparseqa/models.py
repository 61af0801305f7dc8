"""The model registry: which models the demo knows, what their cards report, and where their files are.

A model is named by a hub id, a local directory, or one of the ``synthetic`` names, which are built here from
random weights (with BERT-base's shape and, for the sparse one, 80% of the blocks of every encoder Linear zeroed,
by default as the seed model's: 4 consecutive outputs × 1 input, see ``blocks``) so the demo, the benchmark and the
tests run on a machine with no hub access.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import blocks

SPARSE_ID = "Intel/bert-base-uncased-squadv1.1-sparse-80-1x4-block-pruneofa"
DENSE_ID = "csarron/bert-base-uncased-squad-v1"
SYNTHETIC_SPARSE = "synthetic-sparse"
SYNTHETIC_DENSE = "synthetic-dense"

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class ModelCard:
    """What a model's card reports on SQuAD v1.1 dev, and a short label for tables."""

    model_id: str
    label: str
    exact_match: float | None
    f1: float | None
    description: str


# The hub model's name says "1x4", which its pruning package applies as 4 consecutive outputs × 1 input of each
# (out, in) weight (see blocks): the label names no orientation, the description says so, inspect reads the weights.
CARDS = {
    SPARSE_ID: ModelCard(
        SPARSE_ID,
        "sparse 80% Prune OFA",
        81.29,
        88.47,
        'BERT-base uncased, 80% of encoder weights zero in blocks of 4 (Prune OFA; "1x4" in its name, most likely '
        f"{blocks.describe('4x1')} in PyTorch's (out, in) weight)",
    ),
    DENSE_ID: ModelCard(DENSE_ID, "dense", 80.9, 88.2, "BERT-base uncased, dense"),
    SYNTHETIC_DENSE: ModelCard(SYNTHETIC_DENSE, "dense (synthetic)", None, None, "random weights, BERT-base shape"),
}


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says what to pass instead."""

    def __init__(self, model: str, reason: str):
        super().__init__(
            f"could not load {model}: {reason}; pass --model PATH for a local copy or --synthetic for a latency-only demo"
        )
        self.model = model


def card_for(model: str) -> ModelCard:
    """The registry entry for ``model``, or a card with no reported metrics for any other id or path."""
    if model == SYNTHETIC_SPARSE:
        pattern = synthetic_pattern()
        return ModelCard(
            model,
            f"sparse 80% {pattern} (synthetic)",
            None,
            None,
            f"random weights, BERT-base shape, 80% of the {blocks.describe(pattern)} blocks of every encoder Linear "
            f"zero ({blocks.PRUNING_METHODS[SYNTHETIC_PRUNING]})",
        )
    if model in CARDS:
        return CARDS[model]
    name = Path(model).name if os.path.isdir(model) else model
    return ModelCard(model, name, None, None, "user-supplied model")


def is_synthetic(model: str) -> bool:
    """Whether ``model`` names one of the locally built random-weight models."""
    return model in (SYNTHETIC_SPARSE, SYNTHETIC_DENSE)


def cache_root() -> Path:
    """Where exported IR and built models live (``SPARSEQA_CACHE``, default ``~/.cache/sparseqa``)."""
    return Path(os.environ.get("SPARSEQA_CACHE", Path.home() / ".cache" / "sparseqa"))


@dataclass(frozen=True)
class LocalModel:
    """A model resolved to a directory on disk, with a revision string that changes whenever its files do."""

    model_id: str
    path: Path
    revision: str


def resolve(model: str) -> LocalModel:
    """Find ``model``'s files on disk: build a synthetic model, use a local directory, or fetch a hub snapshot.

    Raises ModelLoadError with a one-line reason when the files cannot be had (no network, unknown id).
    """
    if is_synthetic(model):
        path = build_synthetic(sparse=model == SYNTHETIC_SPARSE)
        return LocalModel(model, path, _directory_revision(path))
    local = os.path.expanduser(model)  # SPARSEQA_MODEL=~/... reaches us unexpanded by a shell
    if os.path.isdir(local):
        path = Path(local).resolve()
        if not (path / "config.json").is_file():
            raise ModelLoadError(model, f"{path} has no config.json")
        return LocalModel(model, path, _directory_revision(path))
    if os.path.exists(local):
        raise ModelLoadError(model, "it is a file, not a model directory")
    if not _is_hub_id(model):
        raise ModelLoadError(model, "there is no such directory, and it is not a hub id (name or org/name)")
    return _hub_snapshot(model)


def _is_hub_id(model: str) -> bool:
    """Whether ``model`` can name a hub repository (checked offline): a path such as /data/m or ./m cannot."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _hub_snapshot(model_id: str) -> LocalModel:
    # Short timeouts so an unreachable hub fails in seconds, not minutes; set before huggingface_hub reads them.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.safetensors", "*.model"]
    try:
        path = Path(snapshot_download(model_id, allow_patterns=patterns))
    except Exception as error:  # huggingface_hub raises many types; each means the same thing to a user here
        raise ModelLoadError(model_id, _short_reason(error)) from error
    if not any(path.glob("*.safetensors")):
        try:
            path = Path(snapshot_download(model_id, allow_patterns=patterns + ["pytorch_model.bin"]))
        except Exception as error:
            raise ModelLoadError(model_id, _short_reason(error)) from error
    return LocalModel(model_id, path, path.name)


def _short_reason(error: Exception) -> str:
    name = type(error).__name__
    if "Offline" in name or "LocalEntryNotFound" in name or "Connect" in name or "Timeout" in name:
        return "the Hugging Face hub is not reachable and the model is not in the local cache"
    if "RepositoryNotFound" in name or "NotFound" in name:
        return "no such model on the Hugging Face hub"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else name
    return first_line[:200]


def _directory_revision(path: Path) -> str:
    """A short hash of the model files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


# ---- the synthetic models --------------------------------------------------------------------------------------

# Bumped when a builder's weights or vocabulary change: the sparse one's at 2 (blocks by pattern and mean |w|), both at
# the next for a vocabulary built from sorted words (the trained one differed from process to process).
SYNTHETIC_VERSIONS = {"sparse": 3, "dense": 2}
SPARSITY = 0.8
SYNTHETIC_PATTERN_ENV = "SPARSEQA_SYNTHETIC_PATTERN"
DEFAULT_SYNTHETIC_PATTERN = "4x1"  # the seed model's (see blocks)
SYNTHETIC_PRUNING = "magnitude"


def synthetic_pattern() -> str:
    """The block orientation of the synthetic sparse model: ``SPARSEQA_SYNTHETIC_PATTERN`` (1x4 or 4x1), default
    the seed model's 4x1. Raises ValueError with the choices for any other value."""
    value = os.environ.get(SYNTHETIC_PATTERN_ENV, "").strip() or DEFAULT_SYNTHETIC_PATTERN
    if value not in blocks.ORIENTATIONS:
        choices = " or ".join(blocks.describe(orientation) for orientation in blocks.ORIENTATIONS)
        raise ValueError(f"{SYNTHETIC_PATTERN_ENV}={value!r} is not a block orientation: choose {choices}")
    return value


def synthetic_name(sparse: bool, seed: int = 0) -> str:
    """The cache directory name of a synthetic model: it names the block pattern and the pruning method of the
    sparse one (e.g. "synthetic-sparse-4x1-magnitude-v2-seed0"), so each pattern is built and cached apart."""
    if sparse:
        return f"synthetic-sparse-{synthetic_pattern()}-{SYNTHETIC_PRUNING}-v{SYNTHETIC_VERSIONS['sparse']}-seed{seed}"
    return f"synthetic-dense-v{SYNTHETIC_VERSIONS['dense']}-seed{seed}"


def build_synthetic(sparse: bool = True, *, directory: Path | None = None, seed: int = 0) -> Path:
    """Build (once, then reuse) a BERT-base-shaped QA model with random weights and a tokenizer over the bundled
    examples' words.

    With ``sparse``, 80% of the blocks of every encoder Linear are zero: blocks of ``synthetic_pattern()`` (by
    default 4 consecutive outputs × 1 input, the seed model's), ranked by mean |w| and the lowest zeroed, as
    Model-Compression-Research-Package prunes. The directory's name says the pattern and the pruning method.
    Written atomically: a half-built directory is never reused.
    """
    pattern = synthetic_pattern() if sparse else None
    name = synthetic_name(sparse, seed)
    target = directory or cache_root() / "models" / name
    if _is_built(target):
        return target
    from transformers import BertConfig, BertForQuestionAnswering
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        torch.manual_seed(seed + (0 if sparse else 1))
        config = BertConfig(vocab_size=30522)  # BERT-base: 12 layers, hidden 768, 12 heads, 3072 intermediate
        model = BertForQuestionAnswering(config).eval()
        record = {"synthetic": True, "sparse": sparse, "seed": seed}
        if sparse:
            prune_blocks(model, SPARSITY, pattern, SYNTHETIC_PRUNING, seed=seed)
            record |= {"pattern": pattern, "pruning": SYNTHETIC_PRUNING}
        model.save_pretrained(staging)
        build_tokenizer().save_pretrained(staging)
        (staging / "sparseqa.json").write_text(json.dumps(record))
        publish(staging, target, _is_built)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def publish(staging: Path, target: Path, is_complete: Callable[[Path], bool]) -> None:
    """Move the finished directory ``staging`` to ``target`` in one rename, so readers never see half of it.

    Another process may have published a complete ``target`` meanwhile and be loading it: keep theirs, never
    delete it. An incomplete ``target`` (an interrupted build) is replaced.
    """
    if is_complete(target):
        return
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        if not is_complete(target):
            raise


def _is_built(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()


def prune_blocks(model, sparsity: float, orientation: str, method: str = "magnitude", *, seed: int = 0) -> None:
    """Zero ``sparsity`` of the ``orientation`` blocks ("1x4" or "4x1", see ``blocks``) of every encoder Linear's
    weight, Linear by Linear, choosing them by ``method``: "magnitude" (lowest mean |w| first) or "random" (drawn
    from a generator seeded with ``seed``)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".encoder." in f".{name}.":
                keep = blocks.prune_mask(module.weight.numpy(), sparsity, orientation, method, rng)
                module.weight.mul_(torch.from_numpy(keep))


def build_vocab(texts: list[str]) -> dict[str, int]:
    """A WordPiece vocabulary: special tokens, every ASCII letter, digit and punctuation mark alone and as a ``##``
    continuation (so any ASCII text tokenizes without [UNK]), then every word of ``texts`` but numbers of more than
    four digits, sorted.

    Built from sorted sets, not by a trainer: ``tokenizers``' WordPiece trainer breaks ties in hash-map order, so
    the same texts gave a different vocabulary in each process (huggingface/tokenizers#1794), and with it other
    int8 calibration and other logits.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    characters = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    # Years, ages and heights are whole tokens: as digit pieces ("1747" -> 1 ##7 ##4 ##7) the model often ended an
    # answer one digit short. Longer numbers (populations) stay digit pieces rather than thousands of rare tokens.
    words = {
        word
        for text in texts
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))
        if not word.isdigit() or len(word) <= 4
    }
    special = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # inside, so train-tiny's code hash covers them
    tokens = [*special, *characters, *(f"##{c}" for c in characters), *sorted(words - set(characters))]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(vocab: dict[str, int] | None = None):
    """transformers' lower-casing BERT tokenizer (fast, with offsets) over ``vocab`` (default: the words of the
    bundled examples)."""
    from transformers import BertTokenizer

    return BertTokenizer(vocab=vocab or build_vocab(example_texts()), do_lower_case=True, model_max_length=512)


def example_texts() -> list[str]:
    """The bundled examples' passages and questions."""
    texts = []
    examples = ASSETS / "examples.json"
    if examples.is_file():
        for example in json.loads(examples.read_text(encoding="utf-8")):
            texts += [example["passage"], example["question"]]
    return texts
