"""The strict YAML loader of config files: the one `lockd.document_text` defines for
resource documents too (no duplicate keys, integers keep their spelling)."""

from __future__ import annotations

from lockd.document_text import StrictLoader, YamlInt

__all__ = ["StrictLoader", "YamlInt"]
