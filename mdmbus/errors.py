"""The root of mdmbus's own exceptions; each subsystem derives from it."""

__all__ = ["MdmbusError", "ConfigError"]


class MdmbusError(Exception):
    """Base of every error mdmbus raises on purpose."""


class ConfigError(MdmbusError):
    """A setting read from the environment is not usable; the message names the variable."""
