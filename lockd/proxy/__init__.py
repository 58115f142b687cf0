"""`lockd proxy`: an identity-aware TLS proxy that enforces locks on database, HTTP and TCP
connections.

Clients present a certificate issued by the cluster CA; every accepted connection is a
session registered with the node agent, refused or ended with the lock's message
(docs/proxy.md). Modules: `proxy_config` (the config file), `pg_wire` (pure PostgreSQL
wire codec), `cert_identity` (who a client certificate names), `relay` (bounded byte
relay), `pg_frontend` / `upstream` (the PostgreSQL handshakes), `pg_scram` (SCRAM
upstream), `http_frontend` (an http listener's first request), `cancel_keys` (the
cancel keys clients get, mapped to the upstream's), `client_connection` (one client),
`listener` (accept, limits, sessions), `proxy_service` (listeners, agent, metrics,
shutdown), `proxy_command` (the `lockd proxy` command), `server_cert` (its certificate).
"""
