"""IMAP4rev1: the sans-I/O protocol core and the data it serves (FETCH items, quoting)."""
