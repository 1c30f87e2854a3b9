"""The `mdmbus` command's exit statuses tell a script what went wrong (no servers needed)."""

from __future__ import annotations

import pytest

from mdmbus.cli import main


def test_unreadable_input_file_is_a_usage_error(tmp_path, capsys):
    missing = tmp_path / "nothing-here.jsonl"
    assert main(["produce", str(missing)]) == 2
    assert f"mdmbus: error: cannot read {missing}" in capsys.readouterr().err


def test_malformed_tenant_id_is_a_usage_error(capsys):
    assert main(["export", "--tenant", "not-a-uuid"]) == 2
    assert "'not-a-uuid' is not a uuid" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["produce", "--no-such-flag"], ["no-such-command"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
