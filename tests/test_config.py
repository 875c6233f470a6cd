"""`accounts.yaml` loading: references resolve, errors name file, line and field, and secrets
never appear in an error or a repr."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ingestor import config
from ingestor.config import ConfigError, Secret

SECRET = "s3cr3t-value-never-printed"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accounts.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load(tmp_path: Path, text: str, **kwargs):
    kwargs.setdefault("env", {"KEY_1": "key-one", "SECRET_1": SECRET})
    return config.load(write(tmp_path, text), **kwargs)


def test_full_file_with_env_and_file_references(tmp_path):
    (tmp_path / "secret.txt").write_text(SECRET + "\n")
    settings = load(
        tmp_path,
        """
        sink: {kind: parquet, path: /data/capture}
        batch_size: 5000
        flush_interval: 2
        workers: 3
        raw_json: false
        accounts:
          - id: main-1
            environment: mainnet
            api_key: ${KEY_1}
            api_secret: file:secret.txt
            topics: [position, wallet]
            categories: [linear]
          - id: 42
            ws_url: ws://127.0.0.1:9000/v5/private
            rest_url: http://127.0.0.1:9000
            api_key: ${KEY_1}
            api_secret: ${SECRET_1}
        """,
    )
    assert settings.sink == config.Sink("parquet", "/data/capture")
    assert (settings.batch_size, settings.flush_interval, settings.workers) == (5000, 2.0, 3)
    assert settings.raw_json is False
    main, explicit = settings.accounts
    assert main.ws_url == "wss://stream.bybit.com/v5/private"
    assert main.rest_url == "https://api.bybit.com"
    assert main.api_secret.reveal() == SECRET
    assert main.categories == ("linear",)
    assert explicit.id == "42" and explicit.environment == "url"
    assert explicit.engine_spec()["api_secret"] == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(main)


def test_env_overrides_then_flags(tmp_path):
    text = """
        batch_size: 100
        accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]
    """
    env = {"INGESTOR_BATCH_SIZE": "250", "INGESTOR_RAW_JSON": "no"}
    settings = load(tmp_path, text, env=env, overrides={"sink": "ducklake", "flush_interval": 0.5})
    assert settings.batch_size == 250 and settings.raw_json is False
    assert settings.sink == config.Sink("ducklake", "capture.lake")
    assert settings.flush_interval == 0.5
    settings = load(tmp_path, text, env={}, overrides={"store": "/tmp/x.duckdb"})
    assert settings.sink == config.Sink("duckdb", "/tmp/x.duckdb")


def test_the_inflight_budget_defaults_to_the_machine_and_a_file_value_wins(tmp_path):
    text = "accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]\n"
    default = load(tmp_path, text, env={})
    assert default.max_inflight_mb is None
    assert 64 <= config.inflight_mb(default) <= 512
    chosen = load(tmp_path, "max_inflight_mb: 96\n" + text, env={})
    assert config.inflight_mb(chosen) == 96
    assert config.relay_budget_bytes(chosen) == 96 * 2**20 * 3 // 8
    with pytest.raises(ConfigError, match="max_inflight_mb"):
        load(tmp_path, "max_inflight_mb: 0\n" + text, env={})


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            """
            accounts:
              - id: a
                environment: mainnet
                api_key: ${KEY_1}
                api_secret: LITERALSECRETVALUE123
            """,
            5,
            "accounts[0].api_secret",
            "literal secret is refused",
        ),
        (
            """
            accounts:
              - id: a
                environment: mainnet
                api_key: ${MISSING}
                api_secret: ${SECRET_1}
            """,
            4,
            "accounts[0].api_key",
            "MISSING is not set",
        ),
        (
            """
            accounts:
              - {id: a, environment: sim, api_key: k, api_secret: s}
              - {id: a, environment: sim, api_key: k, api_secret: s}
            """,
            3,
            "accounts[1].id",
            "duplicate id 'a'",
        ),
        (
            """
            accounts:
              - id: a
                environment: moon
                api_key: k
                api_secret: s
            """,
            3,
            "accounts[0].environment",
            "not one of",
        ),
        (
            """
            batch_size: many
            accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]
            """,
            1,
            "batch_size",
            "expected an integer",
        ),
        (
            """
            accounts:
              - id: a
                environment: sim
                api_key: k
                api_secret: s
                topics: [position, orderbook]
            """,
            6,
            "accounts[0].topics",
            "'orderbook' is not one of",
        ),
        (
            """
            batchsize: 10
            accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]
            """,
            1,
            "batchsize",
            "unknown setting",
        ),
        (
            """
            sink: {kind: sqlite}
            accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]
            """,
            1,
            "sink.kind",
            "not one of",
        ),
        ("accounts: []\n", 1, "accounts", "non-empty list"),
        ("accounts: [\n", None, "", "not valid YAML"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, text, line, field, words):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    error = caught.value
    assert error.path.endswith("accounts.yaml")
    if line is not None:
        assert error.line == line, str(error)
    assert error.field == field
    assert words in str(error)
    assert "LITERALSECRETVALUE123" not in str(error) and SECRET not in str(error)


def test_unreadable_secret_file_is_reported_without_content(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(
            tmp_path,
            """
            accounts:
              - id: a
                environment: testnet
                api_key: ${KEY_1}
                api_secret: file:/nonexistent/x
            """,
        )


def test_engine_ca_file_is_found_beside_the_accounts_file_and_checked(tmp_path):
    (tmp_path / "ca.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
    )
    accounts = "accounts: [{id: a, environment: sim, api_key: k, api_secret: s}]\n"
    settings = load(tmp_path, "engine:\n  ca_file: ca.pem\n" + accounts)
    assert settings.engine["ca_file"] == str(tmp_path / "ca.pem")
    for value, words in (("missing.pem", "cannot read"), ("key.pem", "holds no PEM certificate")):
        with pytest.raises(ConfigError) as caught:
            load(tmp_path, f"engine:\n  ping_interval: 5\n  ca_file: {value}\n" + accounts)
        assert (caught.value.line, caught.value.field) == (3, "engine.ca_file")
        assert words in str(caught.value)


def test_secret_never_prints():
    secret = Secret(SECRET)
    assert SECRET not in repr(secret) and SECRET not in str(secret) and SECRET not in f"{secret}"
    assert secret.reveal() == SECRET
