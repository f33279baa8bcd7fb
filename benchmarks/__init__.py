"""Benchmarks of Flask-Confirm against the patterns it replaces.

Run them all with ``python -m benchmarks.run`` from the repository root (see
``benchmarks/README.md``). Every service they use (redis-server, a PostgreSQL
database, SMTP sinks, moto's SES, WSGI servers, workers) is started on
localhost by the benchmark itself and stopped when it ends.
"""
