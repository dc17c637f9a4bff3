"""Moved to ``tests.support.softhsm``; re-exported while parallel branches land."""

from tests.support.softhsm import SoftHsm, reload_module, softhsm_module  # noqa: F401
