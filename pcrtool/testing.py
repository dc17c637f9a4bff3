"""Moved to ``tests.support`` (test infrastructure is not part of the package); this re-export
keeps old imports working while parallel branches land, and goes away after that."""

from tests.support import (  # noqa: F401
    SidSystemd, corpus_log_names, corpus_root, in_ci, need_module, need_sid_systemd, need_tool,
    sid_systemd_version,
)
