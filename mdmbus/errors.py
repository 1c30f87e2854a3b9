"""The root of mdmbus's own exceptions; each subsystem derives from it."""

__all__ = ["MdmbusError", "ConfigError", "UsageError"]


class MdmbusError(Exception):
    """Base of every error mdmbus raises on purpose."""

    #: The `mdmbus` command's exit status when this error ends it.
    exit_status = 1


class ConfigError(MdmbusError):
    """A setting read from the environment is not usable; the message names the variable."""


class UsageError(MdmbusError):
    """A command-line argument is not usable (a file that cannot be read, a malformed id):
    exit status 2, as argparse's own usage errors."""

    exit_status = 2
