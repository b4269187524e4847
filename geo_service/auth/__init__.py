"""Roles and tokens: who may call what (policy.py, pure), token records (store.py), and the
operations the CLI and the API share (service.py)."""
