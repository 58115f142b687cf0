"""`lockd bench`: measure lockd's hot paths end to end on this machine.

The coordinator (`lockd.bench.cli`) starts what a scenario needs — a real `lockd auth`
subprocess on the chosen store, worker processes running the real agent code
(`lockd.bench.worker`), bare grpc.aio servers for transport baselines — drives it, and
prints a table (or one JSON object per scenario with `--json`). Every child process and
temporary directory is removed on exit, Ctrl-C included. docs/benchmarks.md explains
each scenario and number.
"""
