"""One Settings per process, read and checked at start-up: a bad value stops the process, naming its variable."""

from __future__ import annotations

from pathlib import Path

import functions_framework
import pytest

from control_plane import __main__ as control_plane_main
from control_plane import service
from functions import isolation
from vibesdk_gcp.errors import ConfigurationError
from vibesdk_gcp.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("VIBESDK_LEASE_SECONDS", "a minute", "a number of seconds"),
        ("VIBESDK_SWEEP_GRACE_SECONDS", "-5", "zero or more seconds"),
        ("VIBESDK_QUEUE_TIMEOUT_SECONDS", "-1", "zero or more seconds"),
        ("VIBESDK_HEADER_TIMEOUT_SECONDS", "inf", "a positive number of seconds"),
        ("THREADS", "0", "at least 1"),
        ("VIBESDK_SANDBOX_UID", "nobody", "an integer"),
        ("VIBESDK_SANDBOX_GID", "0", "at least 1"),  # never root's group
        ("PORT", "http", "an integer"),
        ("VIBESDK_MAX_LOCAL_WORKSPACES", "0", "at least 1"),
        ("VIBESDK_VERIFY_PUSH", "maybe", "true or false"),
        ("VIBESDK_SANDBOX_BACKEND", "firecracker", "one of auto, bubblewrap"),
        ("VIBESDK_PREVIEW_DOMAIN", "https://previews.example.com", "no scheme, no path"),
        ("VIBESDK_PREVIEW_DOMAIN", "previews.example.com/app", "no scheme, no path"),
        ("VIBESDK_PREVIEW_DOMAIN", "-previews.example.com", "a host name"),
        ("VIBESDK_PREVIEW_DOMAIN", "previews..example.com", "a host name"),
        ("VIBESDK_PREVIEW_DOMAIN", "previews_example.com", "a host name"),
        ("VIBESDK_PREVIEW_DOMAIN", "localhost:0", "an optional port"),
        ("VIBESDK_PREVIEW_DOMAIN", "localhost:70000", "an optional port"),
        ("VIBESDK_PREVIEW_DOMAIN", ".".join(["a" * 60] * 4), "at most 195 characters"),
        ("VIBESDK_PREVIEW_FRAME_ANCESTORS", "build.example.com", "origins like"),
        ("VIBESDK_PREVIEW_FRAME_ANCESTORS", "https://build.example.com/app", "origins like"),
        ("VIBESDK_PREVIEW_FRAME_ANCESTORS", "https://a.example.com;script-src", "origins like"),
        ("VIBESDK_PREVIEW_FRAME_ANCESTORS", "'self'", "origins like"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable} must be .*{says}.*{value!r}"):
        Settings.from_env({variable: value})


def test_what_is_not_set_takes_the_one_default() -> None:
    assert Settings.from_env({}) == Settings()
    # The limits written elsewhere are the settings' own defaults, not second copies.
    assert isolation.Limits.of(Settings()) == isolation.Limits()
    assert service.Limits.from_settings(Settings()) == service.Limits()


def test_values_read_elsewhere_before_are_settings_now() -> None:
    settings = Settings.from_env(
        {
            "VIBESDK_LEASE_SECONDS": "6",
            "VIBESDK_SWEEP_GRACE_SECONDS": "1.5",
            "THREADS": "8",
            "VIBESDK_SANDBOX_UID": "1234",
            "K_SERVICE": "vibesdk-sandbox-job",
            "PATH": "/opt/bin",
        }
    )
    assert (settings.lease_seconds, settings.sweep_grace_seconds, settings.threads) == (6.0, 1.5, 8)
    assert (settings.sandbox_uid, settings.sandbox_gid) == (1234, 1234)  # the gid follows the uid
    assert settings.on_cloud_run and settings.log_name("functions") == "vibesdk-sandbox-job"
    assert settings.search_path == "/opt/bin"


def test_preview_domain_and_frame_ancestors() -> None:
    settings = Settings.from_env(
        {
            "VIBESDK_PREVIEW_DOMAIN": "Previews.Example.com.",
            "VIBESDK_PREVIEW_FRAME_ANCESTORS": " https://build.example.com/  http://localhost:5173 ",
        }
    )
    assert settings.preview_domain == "previews.example.com"
    assert settings.preview_frame_ancestors == ("https://build.example.com", "http://localhost:5173")
    assert Settings.from_env({"VIBESDK_PREVIEW_DOMAIN": "localhost:8080"}).preview_domain == "localhost:8080"
    assert Settings.from_env({"VIBESDK_PREVIEW_DOMAIN": ""}).preview_domain is None


def test_the_functions_stop_at_start_up_on_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """functions-framework imports functions/main.py once: the settings are read there, not at the first request."""
    monkeypatch.setenv("VIBESDK_LEASE_SECONDS", "soon")
    with pytest.raises(ConfigurationError, match="VIBESDK_LEASE_SECONDS must be"):
        functions_framework.create_app("sandbox_job", str(ROOT / "functions" / "main.py"), "cloudevent")


def test_the_control_plane_stops_at_start_up_on_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[object] = []
    monkeypatch.setattr(control_plane_main.uvicorn, "run", lambda *args, **kwargs: served.append(args))
    monkeypatch.setenv("VIBESDK_HEADER_TIMEOUT_SECONDS", "ten")
    with pytest.raises(ConfigurationError, match="VIBESDK_HEADER_TIMEOUT_SECONDS must be"):
        control_plane_main.main()
    assert served == []  # nothing was served
