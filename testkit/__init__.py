"""Testing support shared by tests/ and bench/: a fake OpenAI-compatible upstream, real redis-server
processes, and servers on free loopback ports.

Not part of the installed product (pyproject's package list leaves it out): it is importable from the
repository root, where pytest (`pythonpath = ["."]`) and `python -m bench...` both run.
"""
