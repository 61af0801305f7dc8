"""``eval --ray``: the questions spread over Ray workers give the one-process eval's answers, each exactly once,
also when a worker dies mid-run. One local Ray instance on 127.0.0.1 (``local_ray``) serves every test here."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from sparseqa.cli import main
from sparseqa.evaluate import evaluate_configuration, load_squad

TINY = Path(__file__).parent / "data" / "squad_tiny.json"


def eval_predictions(capsys, tmp_path: Path, model: Path, *ray_args: str) -> dict:
    out = tmp_path / f"predictions{len(ray_args)}.json"
    code = main(["eval", "--model", str(model), "--data", str(TINY), "--threads", "1",
                 "--predictions-out", str(out), *ray_args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(out.read_text(encoding="utf-8"))


def test_eval_ray_writes_the_predictions_of_the_one_process_eval(local_ray, tiny_sparse_model, tmp_path, capsys):
    alone = eval_predictions(capsys, tmp_path, tiny_sparse_model)
    spread = eval_predictions(capsys, tmp_path, tiny_sparse_model, "--ray", "--ray-workers", "2")
    assert list(spread) == list(alone)  # same questions, same order in the file
    assert spread == alone


def test_a_worker_killed_mid_run_has_its_questions_rerun_and_each_answered_once(local_ray, tiny_sparse_model):
    from sparseqa.ray_cluster import live_actors
    from sparseqa.ray_eval import evaluate_on_ray

    questions = load_squad(TINY)
    configuration = (str(tiny_sparse_model), "openvino", "int8", "auto")
    delivered: Counter[str] = Counter()
    reports: list[str] = []
    killed: list[int] = []

    def kill_one_worker_after_the_first_answers(outcomes) -> None:
        delivered.update(outcome.id for outcome in outcomes)
        if killed:
            return
        worker = live_actors("EvalWorker")[0]  # each has chunks in flight (chunks of 1, two per worker)
        os.kill(worker.pid, signal.SIGKILL)
        killed.append(worker.pid)

    run = evaluate_on_ray(
        configuration, questions, str(TINY), threads=1, workers=2, chunk_size=1, progress=False,
        report=reports.append, on_answers=kill_one_worker_after_the_first_answers,
    )
    expected = evaluate_configuration(configuration, questions, str(TINY), threads=1, progress=False)
    assert killed
    assert any("re-run" in line for line in reports), reports
    assert sorted(delivered) == sorted(question.id for question in questions)
    assert set(delivered.values()) == {1}
    assert run.predictions == expected.predictions
    assert run.n == len(questions)
    deadline = time.monotonic() + 60  # the workers are stopped (ray.kill returns before they are gone)
    while live_actors("EvalWorker") and time.monotonic() < deadline:
        time.sleep(1)
    assert not live_actors("EvalWorker")


def test_more_workers_than_the_cluster_has_cpus_is_a_one_line_error(local_ray, tiny_sparse_model, capsys):
    code = main(["eval", "--model", str(tiny_sparse_model), "--data", str(TINY), "--ray", "--ray-workers", "64"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "64 workers of 1 threads need 64 CPUs but the Ray cluster has 4" in err


def test_ray_options_without_ray_are_a_usage_error(tiny_sparse_model, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--model", str(tiny_sparse_model), "--data", str(TINY), "--ray-workers", "2"])
    assert exit_.value.code == 2
    assert "--ray-address and --ray-workers go with --ray" in capsys.readouterr().err


def test_a_wrong_ray_address_is_a_one_line_error_at_once():
    """Run as a user runs it: a process of its own, which has not joined the session's Ray instance."""
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "sparseqa", "eval", "--synthetic", "--data", str(TINY), "--ray",
         "--ray-address", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"cannot join the Ray cluster at 127.0.0.1:{port}" in done.stderr


def test_the_app_and_the_other_commands_start_without_importing_ray():
    import subprocess
    import sys

    probe = (
        "import sys, app, sparseqa.cli, sparseqa.interface; sparseqa.cli.build_parser(); "
        "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_eval_ray_compare_runs_every_configuration_across_the_cluster(
    local_ray, tiny_sparse_model, tiny_dense_model, tmp_path, capsys
):
    def compare(*ray_args: str) -> dict:
        out = tmp_path / f"compare{len(ray_args)}.json"
        code = main(["eval", "--compare", "--model", str(tiny_sparse_model), "--dense-model", str(tiny_dense_model),
                     "--data", str(TINY), "--threads", "1", "--json", str(out), *ray_args])
        assert code == 0, capsys.readouterr().err
        return json.loads(out.read_text(encoding="utf-8"))

    def scores(result: dict) -> list[tuple]:
        return [(run["model"], run["runtime"], run["precision"], run["kernels"], run["exact_match"], run["f1"],
                 run["agreement"]) for run in result["configurations"]]

    alone, spread = compare(), compare("--ray", "--ray-workers", "2")
    assert scores(spread) == scores(alone)
    assert len(spread["configurations"]) >= 3
    assert capsys.readouterr().err.count("Ray workers of 1 threads") == len(spread["configurations"])
