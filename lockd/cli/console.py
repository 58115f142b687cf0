"""Where a command writes: results to stdout, progress/notes/errors to stderr.

lockctl prints no colour at all, so there is nothing to switch off for pipes or
NO_COLOR. Confirmation prompts need a terminal on stdin.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass, field
from typing import TextIO


def printable(text: str) -> str:
    """`text` with control characters except newline and tab escaped (`\\x1b`)."""
    return "".join(
        ascii(ch)[1:-1] if unicodedata.category(ch) == "Cc" and ch not in "\n\t" else ch
        for ch in text
    )


@dataclass
class Console:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)

    def result(self, text: str) -> None:
        """A command's result (what tctl prints): stdout, a newline added."""
        self.out.write(text + "\n")
        self.out.flush()

    def data(self, text: str) -> None:
        """Rendered data (already newline-terminated): stdout as is."""
        self.out.write(text)
        self.out.flush()

    def note(self, text: str) -> None:
        """Progress, notes and warnings: stderr."""
        self.err.write(text + "\n")
        self.err.flush()

    def error(self, text: str) -> None:
        """`ERROR: <text>` on stderr; control characters other than newline and tab
        (e.g. an escape sequence in a lock message) are shown escaped, not obeyed."""
        self.note(f"ERROR: {printable(text)}")

    def interactive(self) -> bool:
        """True when stdin is a terminal, so a question can be asked."""
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):  # closed or replaced stream
            return False

    def confirm(self, question: str) -> bool:
        """Ask `question [y/N]` on stderr and read the answer; only y/yes says yes."""
        self.err.write(f"{question} [y/N] ")
        self.err.flush()
        answer = self.stdin.readline()
        return answer.strip().lower() in ("y", "yes")
