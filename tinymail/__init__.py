"""tinymail: a complete mail server for small hosts."""

__version__ = "0.1.0"
