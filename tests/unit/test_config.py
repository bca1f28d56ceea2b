"""mailtrack.config: the one reader of arguments and MAILTRACK_* variables."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import mailtrack
from mailtrack.config import OPTIONS, Config, MissingSetting
from mailtrack.exceptions import ConfigurationError

BASE = "https://t.example.com"


def test_comma_separated_keys_are_a_list_newest_last_from_either_source() -> None:
    from_env = Config.from_sources(None, {"MAILTRACK_SECRET_KEY": " old , new ,"})
    from_args = Config.from_sources({"secret_key": "old,new"}, {})
    assert from_env.secret_keys == from_args.secret_keys == ("old", "new")


def test_keys_from_config_sign_with_the_last_key_and_verify_with_every_key() -> None:
    config = Config.from_sources(None, {"MAILTRACK_SECRET_KEY": "old,new", "MAILTRACK_BASE_URL": BASE})
    url = mailtrack.Tracker(list(config.secret_keys), BASE).tracking_url("open", message_id="m", recipient="r")
    assert mailtrack.Tracker(["new"], BASE).verify(url).kind == "open"


def test_key_file_is_one_key_per_line_ignoring_blank_lines_and_comments(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# oldest first\n  old,with,commas  \n\n# the newest signs\nnew\r\n", encoding="utf-8")
    assert Config.from_sources({"secret_key_file": str(keyfile)}, {}).secret_keys == ("old,with,commas", "new")
    assert Config.from_sources(None, {"MAILTRACK_SECRET_KEY_FILE": str(keyfile)}).secret_keys == ("old,with,commas", "new")


def test_key_file_problems_name_the_option_and_never_show_its_content(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--secret-key-file, MAILTRACK_SECRET_KEY_FILE"):
        Config.from_sources({"secret_key_file": str(tmp_path / "missing")}, {})
    empty = tmp_path / "empty"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="holds no key"):
        Config.from_sources({"secret_key_file": str(empty)}, {})


def test_key_and_key_file_from_the_same_source_are_refused(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("k\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not both"):
        Config.from_sources({"secret_key": "a", "secret_key_file": str(keyfile)}, {})
    with pytest.raises(ConfigurationError, match="not both"):
        Config.from_sources(None, {"MAILTRACK_SECRET_KEY": "a", "MAILTRACK_SECRET_KEY_FILE": str(keyfile)})
    # An argument still wins over the environment, whichever form each uses.
    assert Config.from_sources({"secret_key_file": str(keyfile)}, {"MAILTRACK_SECRET_KEY": "env"}).secret_keys == ("k",)


def test_only_commas_is_not_a_key() -> None:
    with pytest.raises(ConfigurationError, match="MAILTRACK_SECRET_KEY"):
        Config.from_sources(None, {"MAILTRACK_SECRET_KEY": " , ,"})


def test_arguments_win_over_environment_and_empty_variables_are_unset() -> None:
    env = {"MAILTRACK_PORT": "9000", "MAILTRACK_HOST": "", "MAILTRACK_DB": "env.sqlite", "MAILTRACK_BASE_URL": BASE}
    config = Config.from_sources(argparse.Namespace(port="7000", db=None, trusted_proxy=[]), env)
    assert (config.port, config.host, config.db, config.base_url) == (7000, "127.0.0.1", "env.sqlite", BASE)


def test_defaults_come_from_the_option_table() -> None:
    config = Config.from_sources(None, {})
    assert (config.host, config.port, config.threads) == (OPTIONS["host"].default, OPTIONS["port"].default,
                                                          OPTIONS["threads"].default)
    assert (config.secret_keys, config.base_url, config.db, config.max_age, config.webhooks) == ((), None, None, None, ())


def test_lists_repeat_as_arguments_and_are_comma_separated_in_the_environment() -> None:
    env = {"MAILTRACK_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1", "MAILTRACK_WEBHOOK": "https://a.example/h,",
           "MAILTRACK_WEBHOOK_SECRET": "s" * 16}
    config = Config.from_sources(None, env)
    assert config.trusted_proxies == ("10.0.0.0/8", "192.168.1.1") and config.webhooks == ("https://a.example/h",)
    config = Config.from_sources({"trusted_proxy": ["::1"], "webhook": ["https://b.example/"]}, env)
    assert config.trusted_proxies == ("::1",) and config.webhooks == ("https://b.example/",)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"MAILTRACK_PORT": "http"}, "--port, MAILTRACK_PORT"),
        ({"MAILTRACK_PORT": "70000"}, "--port, MAILTRACK_PORT"),
        ({"MAILTRACK_THREADS": "0"}, "--threads, MAILTRACK_THREADS"),
        ({"MAILTRACK_WORKERS": "0"}, "--workers, MAILTRACK_WORKERS"),
        ({"MAILTRACK_WORKERS": "many"}, "--workers, MAILTRACK_WORKERS"),
        ({"MAILTRACK_SERVER": "gunicorn"}, "--server, MAILTRACK_SERVER"),
        ({"MAILTRACK_WRITER": "fork"}, "--writer, MAILTRACK_WRITER"),
        ({"MAILTRACK_MAX_AGE": "-1"}, "--max-age, MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_MAX_AGE": "soon"}, "--max-age, MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_MAX_AGE": "inf"}, "--max-age, MAILTRACK_MAX_AGE"),
        ({"MAILTRACK_TRUSTED_PROXIES": "proxy.example"}, "--trusted-proxy, MAILTRACK_TRUSTED_PROXIES"),
        ({"MAILTRACK_BASE_URL": "ftp://t.example.com"}, "--base-url, MAILTRACK_BASE_URL"),
        ({"MAILTRACK_WEBHOOK": "https://h.example/"}, "--webhook-secret, MAILTRACK_WEBHOOK_SECRET"),
        ({"MAILTRACK_WEBHOOK": "file:///etc/passwd", "MAILTRACK_WEBHOOK_SECRET": "s"}, "--webhook, MAILTRACK_WEBHOOK"),
        ({"MAILTRACK_LANDING": "/no/such/landing.html"}, "--landing, MAILTRACK_LANDING"),
        ({"MAILTRACK_TOKEN_FORMAT": "encrypted"}, "--token-format, MAILTRACK_TOKEN_FORMAT"),
        ({"MAILTRACK_WEBHOOK": "https://h.example/", "MAILTRACK_WEBHOOK_SECRET": "s" * 16,
          "MAILTRACK_WEBHOOK_SKIP_MACHINE": "https://other.example/"},
         "--webhook-skip-machine, MAILTRACK_WEBHOOK_SKIP_MACHINE"),
    ],
)
def test_invalid_values_raise_configuration_error_naming_option_and_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config.from_sources(None, env)
    assert names in str(caught.value) and "Traceback" not in str(caught.value)


def test_max_age_error_keeps_the_library_name_for_wsgi_users() -> None:
    with pytest.raises(ConfigurationError, match="max_age must be a positive number"):
        Config.from_sources({"max_age": "0"}, {})


def test_require_names_every_missing_option_and_its_variable() -> None:
    with pytest.raises(MissingSetting) as caught:
        Config.from_sources(None, {"MAILTRACK_BASE_URL": BASE}).require("secret_keys", "base_url", "db")
    message = str(caught.value)
    assert "--secret-key or --secret-key-file (or MAILTRACK_SECRET_KEY, MAILTRACK_SECRET_KEY_FILE)" in message
    assert "--db (or MAILTRACK_DB)" in message and "--base-url" not in message
    assert caught.value.options == ("secret_keys", "db") and isinstance(caught.value, ConfigurationError)


def test_repr_and_errors_never_show_secrets(tmp_path: Path) -> None:
    config = Config.from_sources(
        {"secret_key": "s3cret-old,s3cret-new"},
        {"MAILTRACK_WEBHOOK": "https://h.example/", "MAILTRACK_WEBHOOK_SECRET": "hook-s3cret-0123456"},
    )
    for text in (repr(config), str(config), f"{config}"):
        assert "s3cret" not in text and "<2 keys>" in text and "webhook_secret=<set>" in text
    with pytest.raises(ConfigurationError) as caught:
        Config(secret_keys=["s3cret", ""])
    assert "s3cret" not in str(caught.value)


def test_direct_construction_validates_and_freezes() -> None:
    config = Config(secret_keys=["a", "b"], base_url=BASE + "/", db=Path("x.sqlite"))
    assert config.secret_keys == ("a", "b") and config.base_url == BASE and config.db == "x.sqlite"
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="port"):
        Config(port=True)
    with pytest.raises(ConfigurationError, match="secret_keys must be a list"):
        Config(secret_keys="one-key")  # type: ignore[arg-type]


def test_landing_page_is_read_once_from_the_file(tmp_path: Path) -> None:
    page = tmp_path / "landing.html"
    page.write_text("<p>Leaving?</p>", encoding="utf-8")
    assert Config.from_sources({"landing": str(page)}, {}).landing_html == "<p>Leaving?</p>"


def test_webhook_skip_machine_names_webhooks_that_get_peoples_events_only() -> None:
    env = {"MAILTRACK_WEBHOOK": "https://a.example/h,https://b.example/h", "MAILTRACK_WEBHOOK_SECRET": "s" * 16,
           "MAILTRACK_WEBHOOK_SKIP_MACHINE": "https://b.example/h"}
    config = Config.from_sources(None, env)
    assert config.webhooks_skip_machine == ("https://b.example/h",)
    config = Config.from_sources({"webhook_skip_machine": ["https://a.example/h"]}, env)
    assert config.webhooks_skip_machine == ("https://a.example/h",)
    assert Config.from_sources(None, {k: v for k, v in env.items() if "SKIP" not in k}).webhooks_skip_machine == ()


def test_a_short_webhook_secret_is_refused_naming_its_option_and_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"at least 16 bytes.*--webhook-secret, MAILTRACK_WEBHOOK_SECRET") as caught:
        Config.from_sources(None, {"MAILTRACK_WEBHOOK": "https://h.example/", "MAILTRACK_WEBHOOK_SECRET": "short-secret"})
    assert "short-secret" not in str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                                ("0", False), ("false", False), ("No", False), ("off", False)])
def test_access_log_switch_reads_the_variable(text: str, expected: bool) -> None:
    assert Config.from_sources(None, {"MAILTRACK_ACCESS_LOG": text}).access_log is expected


def test_access_log_is_off_by_default_and_a_bad_value_names_the_variable() -> None:
    assert Config.from_sources(None, {}).access_log is False
    assert Config.from_sources({"access_log": True}, {"MAILTRACK_ACCESS_LOG": "0"}).access_log is True  # argument wins
    with pytest.raises(ConfigurationError, match="MAILTRACK_ACCESS_LOG"):
        Config.from_sources(None, {"MAILTRACK_ACCESS_LOG": "sometimes"})
    with pytest.raises(ConfigurationError, match="access_log"):
        Config(access_log="yes")  # type: ignore[arg-type]


def test_spool_settings_from_either_source_with_size_suffixes() -> None:
    assert Config.from_sources({}, {}).spool_max_bytes == 1 << 30
    assert Config.from_sources({}, {}).spool_dir is None
    config = Config.from_sources({"spool_max_bytes": "512M"}, {"MAILTRACK_SPOOL_DIR": "/var/spool/mailtrack",
                                                             "MAILTRACK_SPOOL_MAX_BYTES": "1G"})
    assert (config.spool_max_bytes, config.spool_dir) == (512 << 20, "/var/spool/mailtrack")
    assert Config.from_sources({}, {"MAILTRACK_SPOOL_MAX_BYTES": "4096"}).spool_max_bytes == 4096
    assert Config.from_sources({}, {"MAILTRACK_SPOOL_MAX_BYTES": " 2 gib "}).spool_max_bytes == 2 << 30


@pytest.mark.parametrize("value", ["0", "-5", "lots", "12X", "1.5G", ""])
def test_a_spool_cap_that_is_no_size_is_refused_naming_its_option(value: str) -> None:
    if not value:
        assert Config.from_sources({}, {"MAILTRACK_SPOOL_MAX_BYTES": value}).spool_max_bytes == 1 << 30  # unset
        return
    with pytest.raises(ConfigurationError, match=r"spool_max_bytes.*--spool-max-bytes.*MAILTRACK_SPOOL_MAX_BYTES"):
        Config.from_sources({}, {"MAILTRACK_SPOOL_MAX_BYTES": value})


def test_token_format_is_opaque_by_default_and_signed_from_either_source() -> None:
    assert Config.from_sources(None, {}).token_format == OPTIONS["token_format"].default == "opaque"
    assert Config.from_sources(None, {"MAILTRACK_TOKEN_FORMAT": "signed"}).token_format == "signed"
    assert Config.from_sources({"token_format": "opaque"}, {"MAILTRACK_TOKEN_FORMAT": "signed"}).token_format == "opaque"
