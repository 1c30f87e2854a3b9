"""The settings object: defaults that fit the embedded stack, and named errors."""

from __future__ import annotations

import pytest

from mdmbus.errors import ConfigError
from mdmbus.settings import Settings


def test_defaults_point_at_the_embedded_stack():
    s = Settings.from_env({})
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.pg_dsn("mdmbus_eu") == "postgresql://postgres@127.0.0.1:55432/mdmbus_eu"
    assert s.clock_speed == 1.0


def test_environment_overrides_and_external_broker():
    s = Settings.from_env({"MDMBUS_KAFKA_BOOTSTRAP": "broker:9092", "MDMBUS_PG_PORT": "5432",
                           "MDMBUS_CLOCK_SPEED": "86400"})
    assert s.kafka_bootstrap == "broker:9092"
    assert s.pg_port == 5432
    assert s.clock_speed == 86400.0


@pytest.mark.parametrize("name,value,message", [
    ("MDMBUS_KAFKA_PORT", "x", "is not a whole number"),
    ("MDMBUS_CLOCK_SPEED", "fast", "is not a number"),
    ("MDMBUS_CLOCK_SPEED", "0", "must be greater than 0"),
    ("MDMBUS_COMMAND_GRACE", "-1", "must be at least 0"),
    # 0 would make the sweeper and a purge loop forever on empty batches.
    ("MDMBUS_SWEEP_BATCH", "0", "must be at least 1"),
    ("MDMBUS_BATCH_SIZE", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_MAX_CONNECTIONS", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_SOURCE_MAX_CONNECTIONS", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_SOURCE_RATE", "0", "must be greater than 0"),
    ("MDMBUS_GATEWAY_SOURCE_BURST", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_SOURCE_V6_PREFIX", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_SOURCE_V6_PREFIX", "129", "must be at most 128"),
    ("MDMBUS_GATEWAY_SLOTS_EXPORT", "0", "must be at least 1"),
    ("MDMBUS_GATEWAY_ACQUIRE_TIMEOUT", "0", "must be greater than 0"),
    ("MDMBUS_TOKEN_MAX_LIFETIME", "-5", "must be greater than 0"),
    ("MDMBUS_JSON_MAX_DEPTH", "1", "must be at least 2"),
])
def test_bad_values_are_named(name, value, message):
    with pytest.raises(ConfigError, match=f"{name}='{value}' {message}"):
        Settings.from_env({name: value})


def test_the_password_is_never_printed():
    s = Settings.from_env({"MDMBUS_PG_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(s)


def test_one_server_per_database_under_compose():
    s = Settings.from_env({"MDMBUS_PG_SERVER_MDMBUS_NA": "postgres-na:5432",
                           "MDMBUS_PG_USER": "mdmbus", "MDMBUS_PG_PASSWORD": "p@ss/word"})
    assert s.pg_server("mdmbus_na") == ("postgres-na", 5432)
    assert s.pg_server("mdmbus_eu") == ("127.0.0.1", 55432)
    assert s.pg_dsn("mdmbus_na") == "postgresql://mdmbus:p%40ss%2Fword@postgres-na:5432/mdmbus_na"
    assert s.pg_dsn("mdmbus_na", connect_to="postgres").endswith("@postgres-na:5432/postgres")


def test_a_malformed_server_is_named():
    with pytest.raises(ConfigError, match="MDMBUS_PG_SERVER_MDMBUS_EU='pg-eu' must be host:port"):
        Settings.from_env({"MDMBUS_PG_SERVER_MDMBUS_EU": "pg-eu"})
