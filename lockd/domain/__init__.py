"""The pure core of lockd: values, rules and state machines, standard library only.

Nothing here does IO or imports a framework; adapters (store, api, agent, cli) carry
out what the domain decides. import-linter enforces this in `make test`.
"""
