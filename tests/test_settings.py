"""Settings: TOML + environment into one validated object; one-line errors naming the key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tasks.core.errors import ConfigError
from tasks.core.settings import load_settings


def test_defaults_match_the_cli_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.study.window_start == date(2021, 1, 1)
    assert settings.study.window_end == date(2021, 6, 30)
    assert settings.survey.sample_size == 50
    assert settings.survey.fieldwork_end is None
    assert settings.retention.publication_date is None
    assert settings.disclosure.threshold == 5
    assert settings.home == Path("var")
    assert settings.database == f"sqlite:///{(tmp_path / 'var' / 'cluster-eval.db')}"
    assert settings.survey.target_respondents == 25


def test_environment_wins_over_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[survey]\nsample_size = 40\nseed = 7\n[study]\ncluster = "north"\n')
    settings = load_settings({"CLUSTER_EVAL_CONFIG": str(config), "CLUSTER_EVAL_SURVEY__SAMPLE_SIZE": "60"})
    assert settings.survey.sample_size == 60
    assert settings.survey.seed == 7
    assert settings.study.cluster == "north"


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[1] / "cluster-eval.example.toml"
    settings = load_settings({"CLUSTER_EVAL_CONFIG": str(example)})
    assert settings.survey.reminder_days == (7, 14)
    assert settings.smtp.retries == 3


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ('[study]\nwindow_start = "soon"\n', {}, "study.window_start: Input should be a valid date"),
        ("[study]\nwindow_start = 2021-07-01\n", {}, "window_end must not be before window_start"),
        ("[survey]\nsample_size = 0\n", {}, "survey.sample_size: Input should be greater than or equal to 1"),
        ("[survey]\nstratify_by = 'postcode'\n", {}, "survey.stratify_by: allowed: 'primary_issue'"),
        ("[survey]\nsurvey_url_template = 'https://x'\n", {}, "survey.survey_url_template: must contain {token}"),
        ("[survey]\nsampel_size = 3\n", {}, "survey.sampel_size: is not a known setting"),
        ("[study]\ncluster = 'North Leeds'\n", {}, "study.cluster: must be 1-40 characters"),
        ("", {"CLUSTER_EVAL_DISCLOSURE__THRESHOLD": "many"}, "disclosure.threshold: Input should be a valid integer"),
        ("[survey\n", {}, "is not valid TOML"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(tmp_path: Path, toml: str, env: dict, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings({"CLUSTER_EVAL_CONFIG": str(config), **env})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_missing_named_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"CLUSTER_EVAL_CONFIG": str(tmp_path / "absent.toml")})
