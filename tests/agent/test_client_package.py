"""lockd.client loads its names on first use: a sidecar that needs only AgentClient does
not import the admin clients, X.509 parsing or the auth server's modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import lockd.client


def test_every_exported_name_resolves_to_its_defining_module() -> None:
    """`__all__` and the lazy table list the same names, and each loads from its module."""
    assert sorted(lockd.client._EXPORTS) == sorted(lockd.client.__all__)
    for name, module in lockd.client._EXPORTS.items():
        assert getattr(lockd.client, name) is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not export fails as a missing attribute does."""
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchClient'"):
        _ = lockd.client.NoSuchClient


def test_a_sidecar_importing_the_agent_client_loads_no_admin_or_crypto_code() -> None:
    """In a fresh interpreter, `from lockd.client import AgentClient` leaves
    cryptography, the auth client and lockd.auth unimported."""
    probe = (
        "import sys\n"
        "from lockd.client import AgentClient\n"
        "print(sorted(m for m in ('cryptography', 'lockd.client.auth_client', 'lockd.auth')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
