import subprocess
import sys
import types

import jax
import pytest

import ntjax as nt


def test_four_fake_devices_are_visible():
    assert jax.local_device_count() == 4


def test_public_api_names():
    for name in ("train", "forecast", "evaluate", "load_dataset", "NHITSConfig", "Registry"):
        assert hasattr(nt, name)


def test_every_public_name_resolves():
    for name in nt.__all__:
        assert getattr(nt, name) is not None, name
    assert set(nt.__all__) <= set(dir(nt))
    assert isinstance(nt.data, types.ModuleType) and isinstance(nt.metrics, types.ModuleType)
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        nt.trian  # noqa: B018


def _run(script: str) -> None:
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]


def test_import_ntjax_imports_no_jax():
    _run("import sys, ntjax; assert 'jax' not in sys.modules, 'import ntjax imported jax'")


def test_functions_named_like_their_modules_stay_functions():
    # Importing ntjax.train (or .evaluate, ...) first must not make nt.train the module.
    _run(
        "import types, ntjax as nt\n"
        "import ntjax.train, ntjax.evaluate, ntjax.backtest, ntjax.calibrate, ntjax.optimize\n"
        "for name in ('train', 'evaluate', 'backtest', 'calibrate', 'optimize'):\n"
        "    assert isinstance(getattr(nt, name), types.FunctionType), name\n"
        "assert isinstance(nt.data, types.ModuleType)\n"
    )
