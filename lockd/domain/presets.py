"""The roles a fresh cluster starts with, as Teleport's presets (issue 15, item 13).

`access` grants nothing on lockd's resources (Teleport's role for reaching servers and
apps; the seed page's troubleshooting case starts from it), `editor` everything,
`auditor` reading everything, and `locksmith` exactly as the seed page defines it. They
are created once, in a store that has never committed anything; an edited or deleted
preset is never put back (a restart must not hand out rights an operator took away).
"""

from __future__ import annotations

from lockd.domain.resources import WILDCARD, Kind, Role, Rule, Verb

LOCK_VERBS = (Verb.LIST, Verb.CREATE, Verb.READ, Verb.UPDATE, Verb.DELETE)

PRESET_ROLES: tuple[Role, ...] = (
    Role(name="access"),
    Role(name="editor", allow=(Rule(resources=(WILDCARD,), verbs=(WILDCARD,)),)),
    Role(
        name="auditor",
        allow=(Rule(resources=(WILDCARD,), verbs=(Verb.LIST.value, Verb.READ.value)),),
    ),
    Role(
        name="locksmith",
        allow=(Rule(resources=(Kind.LOCK.value,), verbs=tuple(v.value for v in LOCK_VERBS)),),
    ),
)
