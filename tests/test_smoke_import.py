import jax

import ntjax as nt


def test_four_fake_devices_are_visible():
    assert jax.local_device_count() == 4


def test_public_api_names():
    for name in ("train", "forecast", "evaluate", "load_dataset", "NHITSConfig", "Registry"):
        assert hasattr(nt, name)
