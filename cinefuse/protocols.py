"""The protocol names, kept importable here for the rooms that still read them from this module;
their one home is :mod:`cinefuse.choices` (with their meaning)."""

from cinefuse.choices import EVAL_PROTOCOLS, SPLIT_PROTOCOLS  # noqa: F401 (re-exported)
