"""lockctl commands that need no server (version, completion), and `users ls --format`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from lockd import __version__
from tests.cli.helpers import AuthServer, lockctl
from tests.cli.test_remote import add_user


def test_version_prints_lockctls_version_without_a_server() -> None:
    """`lockctl version` answers with no config and no auth server at all."""
    result = lockctl(None, "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"lockctl {__version__} (Python 3.")


def _complete(script: str, line: str) -> list[str]:
    """What bash offers after `line` (words so far, the last one being completed)."""
    words = line.split(" ")
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(word) for word in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_lockctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile"], input=program, capture_output=True, text=True, check=True
    )
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_commands_subcommands_and_flags() -> None:
    """Run by a real bash: commands at the top, a command's flags after it, nested
    subcommands, and flag values skipped over."""
    script = lockctl(None, "completion", "bash").stdout
    assert {"lock", "unlock", "get", "users", "version", "completion"} <= set(
        _complete(script, "lockctl ")
    )
    assert _complete(script, "lockctl lock --us") == ["--user"]
    assert set(_complete(script, "lockctl users ")) >= {"add", "ls", "rm", "update"}
    assert _complete(script, "lockctl -c /etc/lockd.yaml users ls --fo") == ["--format"]


def test_zsh_completion_loads_the_bash_function_through_bashcompinit() -> None:
    """The zsh script is the bash one behind bashcompinit."""
    script = lockctl(None, "completion", "zsh").stdout
    assert script.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert "complete -o default -F _lockctl lockctl" in script


def test_users_ls_prints_a_table_or_documents(server: AuthServer) -> None:
    """Default text (the table of `get users -o text`); --format json and yaml print the
    documents `get users` prints."""
    add_user(server, "alice")
    table = lockctl(server, "users", "ls").stdout
    assert table == lockctl(server, "get", "users", "-o", "text").stdout
    as_json = json.loads(lockctl(server, "users", "ls", "--format=json").stdout)
    assert [user["metadata"]["name"] for user in as_json] == ["alice"]
    as_yaml = list(yaml.safe_load_all(lockctl(server, "users", "ls", "-o", "yaml").stdout))
    assert as_yaml == list(yaml.safe_load_all(lockctl(server, "get", "users").stdout))
