"""efea.train and efea.evaluate: the CLI's options, its reports as dicts, its one-line errors,
and Ctrl-C that stops a run which then resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import pytest

import efea

TINY = dict(width=0.25, input=32, batch_size=16, optimizer="sgd", lr=0.05, no_tencrop=True)


def test_train_returns_the_report_it_wrote(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert (tiny_run / "best.bpk").is_file() and (tiny_run / "config.json").is_file()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["width_mult"] == 0.25 and config["model"]["input_size"] == 32
    assert config["epochs"] == 1 and config["report_tencrop"] is False
    assert report["dataset"] == "synth" and report["splits"]


def test_train_result_and_progress(tmp_path):
    seen = []
    result = efea.train("synth", "count=140,level=easy", out=tmp_path / "run", epochs=2,
                        progress=lambda metrics, best: seen.append((metrics["epoch"], best)),
                        **TINY)
    assert result["run_dir"] == str(tmp_path / "run")
    assert result["epochs_done"] == 2 and len(result["history"]) == 2
    assert [epoch for epoch, _ in seen] == [1, 2] and seen[0][1] is True
    assert result["report"] == json.loads((tmp_path / "run" / "report.json").read_text())
    for split in result["report"]["splits"]:
        assert 0.0 <= split["accuracy"] <= 1.0 and split["samples"] > 0


def test_evaluate_scores_a_run_as_the_cli_does(tiny_run, efea_cli, tmp_path):
    result = efea.evaluate(tiny_run, out=tmp_path / "py")
    assert result["out"] == str(tmp_path / "py")
    assert result["report"] == json.loads((tmp_path / "py" / "report.json").read_text())
    subprocess.run([str(efea_cli), "eval", "--model", str(tiny_run), "--out", str(tmp_path / "cli"),
                    "--quiet"], check=True, capture_output=True)
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())
    strip = lambda report: [{k: v for k, v in s.items() if k != "images_per_sec"}
                            for s in report["splits"]]
    assert strip(result["report"]) == strip(cli)
    one = efea.evaluate(tiny_run, splits=["PublicTest"], tta="tencrop", out=tmp_path / "tta")
    assert [(s["split"], s["tta"]) for s in one["report"]["splits"]] == [
        ("PublicTest", None), ("PublicTest", "tencrop")]


def test_errors_have_the_cli_messages(tiny_run, efea_cli, tmp_path):
    with pytest.raises(efea.ModelError) as error:
        efea.evaluate(tmp_path / "nothing")
    cli = subprocess.run([str(efea_cli), "eval", "--model", str(tmp_path / "nothing")],
                         capture_output=True, text=True)
    assert cli.stderr.strip() == f"error: {error.value}"
    with pytest.raises(efea.DataError, match="has no split `Validation`"):
        efea.evaluate(tiny_run, splits=["Validation"], out=tmp_path / "e")
    with pytest.raises(efea.DataError, match="unknown dataset"):
        efea.train("mnist", tmp_path)
    with pytest.raises(efea.DataError, match="needs a path"):
        efea.train("fer2013")
    with pytest.raises(ValueError, match="optimizer `lion`"):
        efea.train(optimizer="lion")
    with pytest.raises(ValueError, match="tta `flip`"):
        efea.evaluate(tiny_run, tta="flip")
    with pytest.raises(ValueError, match="drop the other training options"):
        efea.train(resume=tiny_run, epochs=3)
    with pytest.raises(TypeError):
        efea.train(epoch=3)  # a misspelt option is not silently ignored
    with pytest.raises(efea.ConfigError, match="batch"):
        efea.train("synth", "count=70", out=tmp_path / "zero", batch_size=0, epochs=1)


def test_ctrl_c_stops_training_after_a_batch_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    first_epoch = threading.Event()

    # SIGINT to ourselves once the first epoch is done: what Ctrl-C in a terminal sends. The
    # thread can send it only because training does not hold the GIL.
    sender = threading.Thread(
        target=lambda: first_epoch.wait(120) and os.kill(os.getpid(), signal.SIGINT)
    )
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        efea.train("synth", "count=140,level=easy", out=run, epochs=4,
                   progress=lambda metrics, best: first_epoch.set(), **TINY)
    sender.join()
    assert not (run / "report.json").exists()
    resumed = efea.train(resume=run)
    assert resumed["epochs_done"] == 4 and len(resumed["history"]) == 4
    assert (run / "report.json").is_file()
