"""The command line as a process: bad configuration or environment gives one line and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # the command line as a process


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTER_EVAL_")}
    return subprocess.run([sys.executable, "-m", "cli", *args],  # noqa: S603
                          env={**clean, "CLUSTER_EVAL_HOME": str(tmp_path / "var"), **env},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        ({"CLUSTER_EVAL_CONFIG": "absent.toml"}, None,
         "config file absent.toml (from CLUSTER_EVAL_CONFIG) does not exist"),
        ({}, "[study\nwindow_start = 1", "is not valid TOML"),
        ({}, "[survey]\nsample_size = -3\n", "survey.sample_size: Input should be greater than or equal to 1"),
        ({"CLUSTER_EVAL_DATABASE_URL": "postgresql+psycopg://u:hunter2@127.0.0.1:9/none"}, None,
         "database postgresql+psycopg://u:***@127.0.0.1:9/none is unreachable"),
        ({"CLUSTER_EVAL_DATABASE_URL": "mysql://x/y"}, None, "only sqlite:/// and postgresql+psycopg:// URLs"),
        ({"CLUSTER_EVAL_DATABASE_URL": "postgresql+asyncpg://x/y"}, None, "only sqlite:/// and postgresql+psycopg://"),
        ({"CLUSTER_EVAL_HOME": "/proc/cluster-eval"}, None, "CLUSTER_EVAL_HOME /proc/cluster-eval is not writable"),
        ({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, None,
         "no Prefect server answers at PREFECT_API_URL http://127.0.0.1:9/api: start it"),
    ],
)
def test_bad_setup_is_one_line_and_exit_1(tmp_path: Path, env: dict[str, str], config: str | None,
                                          expected: str) -> None:
    if config is not None:
        (tmp_path / "cluster-eval.toml").write_text(config)
    done = _run(tmp_path, "status", **env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cluster-eval: error: ")
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("args", [[], ["sample"], ["sample", "--wave", "0"], ["retention", "--as-of", "01/02/2024"],
                                  ["frobnicate"]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = _run(tmp_path, *args)
    assert done.returncode == 2
    assert "usage: cluster-eval" in done.stderr and "Traceback" not in done.stderr
