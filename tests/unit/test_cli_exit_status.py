"""The `mdmbus` command's exit statuses tell a script what went wrong (no servers needed)."""

from __future__ import annotations

import pytest

from mdmbus.cli import main


def test_unreadable_input_file_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "nothing-here.jsonl"
    assert main(["produce", str(missing)]) == 2
    assert f"mdmbus: error: cannot read {missing}" in capsys.readouterr().err


def test_malformed_tenant_id_is_a_usage_error(capsys):
    assert main(["token", "--tenant", "not-a-uuid", "--role", "connector"]) == 2
    assert "'not-a-uuid' is not a uuid" in capsys.readouterr().err


@pytest.mark.parametrize("argv, says", [
    (["process", "pipeline"], "runs per region: give --region"),
    (["process", "sweeper", "--region", "mars"], "unknown region mars"),
    (["deadletters", "list", "--region", "na,eu"], "give one region"),
    (["token", "--tenant", "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "--role", "connector",
      "--write"], "--write needs --region"),
])
def test_region_arguments_are_checked(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MDMBUS_STATE_DIR", str(tmp_path))
    assert main(argv) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["produce", "--no-such-flag"], ["no-such-command"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
