"""Check sparseqa's two decodings against transformers 4.x's own code, on a local model.

- demo: ``python -m sparseqa ask --runtime pytorch --top-k K --json`` against
  ``pipeline("question-answering")(question=..., context=..., top_k=K, max_answer_len=30)``: same answers, scores
  within 1e-6.
- run_qa (with ``--utils-qa``): ``python -m sparseqa eval --runtime pytorch --predictions-out`` against run_qa.py's
  evaluation (its ``prepare_validation_features`` at its defaults, the model, ``utils_qa.postprocess_qa_predictions``):
  the same answer text for every question of ``--data``.

transformers 5 has no question-answering pipeline, so the reference runs in a side environment that reuses this
one's packages and shadows transformers with 4.57.1::

    python3.11 -m venv /tmp/tf4 && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/tf4/lib/python3.11/site-packages/zz_project.pth
    /tmp/tf4/bin/pip install --no-deps transformers==4.57.1 'tokenizers>=0.22,<0.23' 'huggingface_hub>=0.34,<1.0'
    python tests/reference_transformers4.py --reference-python /tmp/tf4/bin/python --model DIR \\
        [--utils-qa examples/pytorch/question-answering/utils_qa.py from a transformers checkout]

DIR is any local BERT QA model with a fast tokenizer (tests/conftest.py's ``build_tiny_model`` makes one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOP_KS = (1, 3, 5, 20)


def cases() -> list[tuple[str, str]]:
    """The bundled examples, and passages of several windows with repeated and differently cased answers."""
    examples = json.loads((REPO / "assets" / "examples.json").read_text(encoding="utf-8"))
    harbour = " ".join(f"In year {n} the harbour of town {n} shipped grain and salt." for n in range(60))
    passages = [
        harbour + " The Treasure lies under Marrow Bridge, and the treasure is gold.",
        "Paris is big. paris is old. PARIS is in France. The river Seine runs through Paris.",
        " ".join(example["passage"] for example in examples[:6]),
    ]
    questions = ["Where is the treasure?", "What did the town ship?", "  Which river runs through it?", "When?"]
    return [(e["question"], e["passage"]) for e in examples] + [(q, p) for p in passages for q in questions]


def reference(model: str, data: str | None, utils_qa: str | None) -> dict:
    """Runs under transformers 4.x: the pipeline's answers for every case and top-k, and run_qa's predictions."""
    import transformers
    from transformers import pipeline

    if not transformers.__version__.startswith("4."):
        raise SystemExit(f"the reference needs transformers 4.x; this environment has {transformers.__version__}")
    qa = pipeline("question-answering", model=model, tokenizer=model, device="cpu")
    answers = []
    for question, context in cases():
        for top_k in TOP_KS:
            found = qa(question=question, context=context, top_k=top_k, max_answer_len=30)
            answers.append([found] if isinstance(found, dict) else found)
    result = {"version": transformers.__version__, "pipeline": answers}
    if utils_qa:
        result["run_qa"] = run_qa_predictions(model, data, utils_qa)
    return result


def run_qa_predictions(model_dir: str, data: str, utils_qa: str) -> dict[str, str]:
    """run_qa.py's evaluation at its defaults (384 tokens padded, stride 128, n-best 20, answers of at most 30)."""
    import importlib.util

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    spec = importlib.util.spec_from_file_location("utils_qa", utils_qa)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = json.loads(Path(data).read_text(encoding="utf-8"))
    rows = [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"]}
        for article in raw["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    examples = Dataset.from_list(rows)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()

    def prepare_validation_features(batch):  # as run_qa.py writes it, for a question-first tokenizer
        batch["question"] = [q.lstrip() for q in batch["question"]]
        tokenized = tokenizer(
            batch["question"],
            batch["context"],
            truncation="only_second",
            max_length=min(384, tokenizer.model_max_length),
            stride=128,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        sample_mapping = tokenized.pop("overflow_to_sample_mapping")
        tokenized["example_id"] = [batch["id"][sample] for sample in sample_mapping]
        for i in range(len(tokenized["input_ids"])):
            sequence_ids = tokenized.sequence_ids(i)
            tokenized["offset_mapping"][i] = [
                (o if sequence_ids[k] == 1 else None) for k, o in enumerate(tokenized["offset_mapping"][i])
            ]
        return tokenized

    features = examples.map(prepare_validation_features, batched=True, remove_columns=examples.column_names)
    names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in features.column_names]
    starts, ends = [], []
    with torch.no_grad():
        for begin in range(0, len(features), 8):
            batch = features[begin : begin + 8]
            output = model(**{name: torch.tensor(batch[name]) for name in names})
            starts.append(output.start_logits.numpy())
            ends.append(output.end_logits.numpy())
    predictions = module.postprocess_qa_predictions(
        examples=examples, features=features, predictions=(np.concatenate(starts), np.concatenate(ends))
    )
    return dict(predictions)


def ask(model: str, question: str, context: str, top_k: int) -> list[dict]:
    """The answers of ``python -m sparseqa ask --runtime pytorch --json`` (its main, in this process)."""
    from sparseqa.cli import main

    out = io.StringIO()
    argv = ["ask", "--model", model, "--runtime", "pytorch", "--top-k", str(top_k), "--json", "--runs", "1"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        if main([*argv, "--question", question, "--context", context]) != 0:
            raise SystemExit(f"ask failed on {question!r}")
    result = json.loads(out.getvalue())
    if result["precision"] != "fp32":
        raise SystemExit(f"--runtime pytorch ran {result['precision']}, not fp32")
    best = {"answer": result["answer"], "start": result["start"], "end": result["end"], "score": result["score"]}
    others = [
        {"answer": span["text"], "start": span["start"], "end": span["end"], "score": span["score"]}
        for span in result["alternatives"]
    ]
    return [best, *others]


def compare(args: argparse.Namespace) -> int:
    """Run the reference in ``--reference-python``, then sparseqa here; print the agreement; 1 on any difference."""
    sys.path.insert(0, str(REPO))
    command = [args.reference_python, __file__, "--reference", "--model", args.model, "--data", args.data]
    if args.utils_qa:
        command += ["--utils-qa", args.utils_qa]
    expected = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    failures = 0
    worst = 0.0
    pairs = [(question, context, top_k) for question, context in cases() for top_k in TOP_KS]
    for (question, context, top_k), theirs in zip(pairs, expected["pipeline"]):
        ours = ask(args.model, question, context, top_k)
        if [(a["answer"], a["start"], a["end"]) for a in ours] != [(a["answer"], a["start"], a["end"]) for a in theirs]:
            failures += 1
            print(f"different answers: {question!r}, top_k={top_k}\n  sparseqa: {ours}\n  pipeline: {theirs}")
            continue
        worst = max([worst] + [abs(o["score"] - t["score"]) for o, t in zip(ours, theirs)])
    print(
        f"demo: {len(pairs) - failures}/{len(pairs)} cases answered as the transformers {expected['version']} pipeline "
        f"does; largest score difference {worst:.2g}"
    )
    failures += worst > 1e-6
    if "run_qa" in expected:
        with tempfile.TemporaryDirectory() as directory:
            predictions = Path(directory) / "predictions.json"
            subprocess.run(
                [sys.executable, "-m", "sparseqa", "eval", "--model", args.model, "--runtime", "pytorch", "--data",
                 args.data, "--predictions-out", str(predictions)],
                check=True, capture_output=True, cwd=REPO,
            )  # fmt: skip
            ours = json.loads(predictions.read_text(encoding="utf-8"))
        theirs = expected["run_qa"]
        different = [qid for qid in theirs if ours.get(qid) != theirs[qid]]
        for qid in different:
            print(f"different answer to {qid}: sparseqa {ours.get(qid)!r}, run_qa {theirs[qid]!r}")
        print(f"run_qa: {len(theirs) - len(different)}/{len(theirs)} answers identical to run_qa.py's on {args.data}")
        failures += len(different)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local BERT QA model directory")
    parser.add_argument("--reference-python", help="python of an environment with transformers 4.x")
    parser.add_argument("--utils-qa", help="transformers' examples/pytorch/question-answering/utils_qa.py")
    parser.add_argument("--data", default=str(REPO / "tests" / "data" / "squad_tiny.json"), help="a SQuAD v1.1 file")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        json.dump(reference(args.model, args.data, args.utils_qa), sys.stdout)
        return 0
    if not args.reference_python:
        parser.error("--reference-python is required: see this script's docstring for the side environment")
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
