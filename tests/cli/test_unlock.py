"""`lockctl unlock`: exact-target removal, confirmation on a terminal, --yes."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.cli.helpers import LOCKCTL, AuthServer, lockctl

pytestmark = pytest.mark.slow

NAME = re.compile(r'Created a lock with name "([0-9a-f-]{36})"\.\n')


def lock(server: AuthServer, *flags: str) -> str:
    result = lockctl(server, "lock", *flags)
    assert result.returncode == 0, result.stderr
    match = NAME.fullmatch(result.stdout)
    assert match
    return match.group(1)


def names(server: AuthServer) -> set[str]:
    text = lockctl(server, "get", "locks", "-o", "text").stdout
    return {line.split()[0] for line in text.splitlines()[2:]}


def test_unlock_yes_removes_exact_matches_only(server: AuthServer) -> None:
    """unlock --yes deletes the locks on exactly the given target and keeps wider ones."""
    first = lock(server, "--user=mallory", "--message=one")
    second = lock(server, "--user=mallory", "--ttl=1h")
    union = lock(server, "--user=mallory", "--server-id=srv-1")
    other = lock(server, "--user=alice")

    result = lockctl(server, "unlock", "--user=mallory", "--yes")
    assert result.returncode == 0, result.stderr
    deleted = sorted([first, second])
    table, _, deletions = result.stdout.partition(f'lock "{deleted[0]}" has been deleted\n')
    assert table.splitlines()[0].split() == ["ID", "Target", "Message", "Expires"]
    assert {line.split()[0] for line in table.splitlines()[2:]} == set(deleted)
    assert deletions == f'lock "{deleted[1]}" has been deleted\n'
    assert result.stderr == (
        f'note: 1 other lock(s) also hit User:"mallory" and stay: {union} '
        f'(User:"mallory" ServerID:"srv-1"); remove them with lockctl rm lock/<name>\n'
    )
    assert names(server) == {union, other}


def test_unlock_combined_target(server: AuthServer) -> None:
    """unlock with several flags removes only the lock on that combined target."""
    union = lock(server, "--user=mallory", "--server-id=srv-1")
    lone = lock(server, "--user=mallory")
    result = lockctl(server, "unlock", "--server-id=srv-1", "--user=mallory", "-y")
    assert result.returncode == 0
    assert result.stdout.endswith(f'lock "{union}" has been deleted\n')
    assert names(server) == {lone}


def test_unlock_refuses_without_yes_off_a_terminal(server: AuthServer) -> None:
    """Without --yes and without a terminal, unlock lists what it would delete and exits 2."""
    name = lock(server, "--device", "9cdfc0ad-64b7-4d9c-9342-50e97f418ba0")
    result = lockctl(server, "unlock", "--device", "9cdfc0ad-64b7-4d9c-9342-50e97f418ba0")
    assert result.returncode == 2
    assert name in result.stdout  # the locks it would delete are listed
    assert result.stderr == (
        "ERROR: refusing to delete 1 lock(s) without confirmation: stdin is not a terminal; "
        "pass --yes\n"
    )
    assert names(server) == {name}


def test_unlock_nothing_to_remove_exits_1(server: AuthServer) -> None:
    """unlock with no matching lock exits 1 and says so."""
    result = lockctl(server, "unlock", "--user=nobody", "--yes")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        'ERROR: no lock in force targets exactly User:"nobody"\n',
    )


def run_on_terminal(server: AuthServer, answer: str, *args: str) -> tuple[int, str, str]:
    """Run lockctl with a pseudo-terminal as stdin and type `answer`."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [LOCKCTL, "-c", str(server.config), *args],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, answer.encode())
        stdout, stderr = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("answer", ["y\n", "yes\n"])
def test_unlock_asks_on_a_terminal_yes(server: AuthServer, answer: str) -> None:
    """On a terminal unlock asks, and a yes deletes the lock."""
    name = lock(server, "--role=contractor")
    code, stdout, stderr = run_on_terminal(server, answer, "unlock", "--role=contractor")
    assert (code, stderr) == (0, "Delete 1 lock(s)? [y/N] ")
    assert stdout.endswith(f'lock "{name}" has been deleted\n')
    assert names(server) == set()


@pytest.mark.parametrize("answer", ["\n", "n\n", "yep\n"])
def test_unlock_asks_on_a_terminal_no(server: AuthServer, answer: str) -> None:
    """On a terminal unlock asks, and anything but yes deletes nothing."""
    name = lock(server, "--role=contractor")
    code, stdout, stderr = run_on_terminal(server, answer, "unlock", "--role=contractor")
    assert (code, stderr) == (1, "Delete 1 lock(s)? [y/N] Aborted; no lock deleted.\n")
    assert "has been deleted" not in stdout
    assert names(server) == {name}
