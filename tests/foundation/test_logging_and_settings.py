"""Logs never carry secrets or raw personal data; settings and Redis URLs behave as documented."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stderr

import pytest
import structlog

from core.logging import configure_logging, mask_email, mask_phone, scrub_text
from core.redis_conn import arq_settings, connect
from core.settings import SettingError, Settings, default_shops_file_warning, env_float, env_int


def _capture(fmt: str) -> str:
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        configure_logging(fmt, "info")
        log = structlog.get_logger("t")
        log.info(
            "event",
            email="jane.doe@example.com",
            phone="+46701234567",
            access_token="shpat_abc",
            client_secret="s3cr3t",
            note="mail jane.doe@example.com or call +46 70 123 45 67",
            nested={"customer": {"email": "x@example.org"}, "webhook_secret": "w"},
        )
    configure_logging("json", "warning")
    return buffer.getvalue()


def test_json_logs_mask_personal_data_and_hide_secrets() -> None:
    out = _capture("json")
    line = json.loads(out.strip().splitlines()[-1])
    for raw in ("jane.doe@example.com", "+46701234567", "shpat_abc", "s3cr3t", "x@example.org", "123 45 67"):
        assert raw not in out
    assert line["access_token"] == "***" and line["client_secret"] == "***"
    assert line["email"].startswith("j***@e***.com#")
    assert line["nested"]["webhook_secret"] == "***"


def test_console_logs_are_scrubbed_too() -> None:
    out = _capture("console")
    assert "jane.doe@example.com" not in out and "shpat_abc" not in out


def test_masks_are_stable_and_distinct() -> None:
    assert mask_email("a@example.com") == mask_email("A@example.com")
    assert mask_email("a@example.com") != mask_email("b@example.com")
    assert mask_phone("+46701234567") == mask_phone("+46 70 123 45 67")
    assert scrub_text("no personal data here 12345") == "no personal data here 12345"


def test_settings_from_environment() -> None:
    s = Settings.from_env(
        {"PORT": "9000", "ADMIN_TOKEN": "t", "LOG_FORMAT": "console", "REDIS_URL": "redis://x:1/2"}
    )
    assert (s.port, s.admin_token, s.log_format, s.redis_url) == (9000, "t", "console", "redis://x:1/2")
    assert "admin_token" not in repr(s)
    default = Settings.from_env({})
    assert default.port == 8080 and default.shops_file.endswith("mappings/demo.toml")
    assert Settings.from_env({"LOG_LEVEL": "WARN"}).log_level == "warning"
    assert Settings.from_env({"LOG_LEVEL": "Fatal "}).log_level == "critical"
    assert Settings.from_env({"REDIS_URL": "REDIS://h:6379/0"}).redis_url == "REDIS://h:6379/0"
    for url in ("rediss://:pw@redis.example.com:6380/0", "redis://h", "unix:///tmp/redis.sock?db=1"):
        assert Settings.from_env({"REDIS_URL": url}).redis_url == url


def test_an_unset_shops_file_is_warned_about() -> None:
    assert default_shops_file_warning(Settings.from_env({}), {}) is not None
    assert (
        default_shops_file_warning(Settings.from_env({"SHOPS_FILE": "x.toml"}), {"SHOPS_FILE": "x.toml"})
        is None
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_URL": "notaurl"}, "REDIS_URL must start with redis://"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL must start with"),
        ({"REDIS_URL": "redis://127.0.0.1:abc/0"}, "REDIS_URL must be redis[s]://"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/x"}, "REDIS_URL must be redis[s]://"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL must be redis[s]://"),
        ({"REDIS_URL": "unix://"}, "REDIS_URL unix:// needs the socket's path"),
        ({"PORT": "99999"}, "PORT must be a port number from 0 to 65535, not '99999'"),
        ({"PORT": "abc"}, "PORT must be a port number"),
        ({"LOG_LEVEL": "bogus"}, "LOG_LEVEL must be one of debug, info, warning, error, critical, notset"),
        (
            {"REDIS_URL": "hunter2secret@redis:6379"},
            "REDIS_URL must start with redis://, rediss://, unix:// (it has no scheme)",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or console"),
    ],
)
def test_bad_settings_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        Settings.from_env(env)
    assert "hunter2" not in str(raised.value)


def test_rediss_urls_accept_herokus_self_signed_certificates() -> None:
    settings = arq_settings("rediss://:pw@redis.example.com:6380/0")
    assert settings.ssl and settings.ssl_cert_reqs == "none"
    client = connect("rediss://:pw@redis.example.com:6380/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "none"
    plain = arq_settings("redis://localhost:6379/0")
    assert not plain.ssl


def test_library_log_records_are_json_and_scrubbed() -> None:
    import logging

    buffer = io.StringIO()
    with redirect_stderr(buffer):
        configure_logging("json", "info")
        logging.getLogger("arq.worker").info("job for %s done", "someone@example.com")
    configure_logging("json", "warning")
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["logger"] == "arq.worker" and line["level"] == "info"
    assert "someone@example.com" not in line["event"] and "done" in line["event"]


def test_tuning_numbers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPSYNC_T_INT", "0")
    monkeypatch.setenv("SHOPSYNC_T_FLOAT", "0.25")
    assert (env_int("SHOPSYNC_T_INT", 8), env_float("SHOPSYNC_T_FLOAT", 1.0)) == (0, 0.25)
    assert (env_int("SHOPSYNC_T_UNSET", 8), env_float("SHOPSYNC_T_UNSET", 1.5)) == (8, 1.5)
    monkeypatch.setenv("SHOPSYNC_T_INT", "1.5")
    with pytest.raises(SettingError, match=r"^SHOPSYNC_T_INT must be an integer, not '1.5'$"):
        env_int("SHOPSYNC_T_INT", 8)
    monkeypatch.setenv("SHOPSYNC_T_INT", "-5")
    with pytest.raises(SettingError, match=r"^SHOPSYNC_T_INT must be an integer of at least 0, not '-5'$"):
        env_int("SHOPSYNC_T_INT", 8, minimum=0)
    monkeypatch.setenv("SHOPSYNC_T_FLOAT", "nan")
    with pytest.raises(SettingError, match="SHOPSYNC_T_FLOAT must be a number"):
        env_float("SHOPSYNC_T_FLOAT", 1.0)
