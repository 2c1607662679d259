"""The API reference (``mkdocs.yml``, ``docs/``) builds in strict mode, so a reference to an
object that moved or was renamed, a docstring griffe cannot parse, or a broken link between
pages fails the suite. mkdocstrings reads the source statically (griffe): the build imports
neither ntjax nor JAX and takes a few seconds."""

import argparse
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ntjax.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
CLI_PAGE = ROOT / "docs" / "cli.md"


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = _mkdocs_build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    return out


# Page -> objects it documents (their anchors) and a phrase of one of their docstrings.
EXPECTED = {
    "data": (
        [
            "ntjax.data.frame.from_wide",
            "ntjax.data.missing.fill_missing",
            "ntjax.data.windows.Panel",
        ],
        "Checks a long frame and returns it normalised",
    ),
    "models": (
        ["ntjax.models.ModelSpec", "ntjax.models.MODELS", "ntjax.config.NHITSConfig"],
        "The closed table of model families",
    ),
    "training": (
        ["ntjax.train.fit.train", "ntjax.train.fit.fit", "ntjax.config.TrainingConfig"],
        "Fits a model on every series of",
    ),
    "forecasting": (
        [
            "ntjax.predict.forecasting.forecast",
            "ntjax.record.ModelRecord",
            "ntjax.provenance.check_out_of_sample",
            "ntjax.calibrate.calibrate",
        ],
        "The leakage guard: whether any scored target of",
    ),
    "evaluation": (
        [
            "ntjax.evaluate.evaluate",
            "ntjax.crossval.cross_validation",
            "ntjax.metrics.wql",
            "ntjax.metrics.crps",
            "ntjax.metrics.msis",
        ],
        "Mean weighted quantile loss",
    ),
    "tuning": (
        ["ntjax.optimize.optimize", "ntjax.optimize.OptimizeResult"],
        "Runs an optuna study",
    ),
    "backtest": (
        ["ntjax.backtest.backtest", "ntjax.backtest.BacktestResult"],
        "Walk-forward trading backtest of a forecasting model on one price series",
    ),
    "store": (
        ["ntjax.store.store.Store", "ntjax.store.catalog.Catalog", "ntjax.registry.Registry"],
        "Write-once model artifacts and their index under one root folder",
    ),
    "compression": (
        ["ntjax.lifecycle.quantize.quantize", "ntjax.lifecycle.distill.distill"],
        "quantised to",
    ),
    "cli": ([], "ntjax alias rollback NAME"),
}


@pytest.mark.parametrize("page", sorted(EXPECTED), ids=str)
def test_page_documents_its_objects(site, page):
    html = (site / page / "index.html").read_text(encoding="utf-8")
    anchors, phrase = EXPECTED[page]
    missing = [anchor for anchor in anchors if f'id="{anchor}"' not in html]
    assert not missing, f"{page}: no section for {missing}"
    assert phrase in html


def test_a_missing_object_fails_the_build(tmp_path):
    # The guard itself: strict mode must turn an unresolvable reference into a failure.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("::: ntjax.metrics.no_such_metric\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        textwrap.dedent(
            f"""\
            site_name: broken
            docs_dir: docs
            plugins:
              - mkdocstrings:
                  handlers:
                    python:
                      paths: [{str(ROOT)!r}]
            """
        )
    )
    result = _mkdocs_build(config, tmp_path / "site")
    assert result.returncode != 0
    assert "no_such_metric" in result.stderr


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of ``parser`` and of its subcommands' parsers (argparse has no public
    way to list them)."""
    found = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found - {"--help"}


def test_cli_page_covers_every_command_and_option():
    text = CLI_PAGE.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\w+)$", text, flags=re.MULTILINE))
    assert set(COMMANDS) <= sections, f"docs/cli.md has no section for {set(COMMANDS) - sections}"
    undocumented = sorted(o for o in _options(build_parser()) if f"`{o}" not in text)
    assert not undocumented, f"docs/cli.md does not mention {undocumented}"
