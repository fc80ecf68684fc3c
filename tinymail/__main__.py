"""Entry point for `tinymail`, `python -m tinymail` and the zipapp.

Invoked as `sendmail`, `mailq` or `newaliases` (argv[0], e.g. through a
symlink), it behaves as that command, as /usr/sbin/sendmail does.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Dispatch on the program name, then run the CLI."""
    name = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if name in ("mailq", "newaliases"):
        # `mailq -c FILE`: global options go before the command name.
        options = argv[:2] if argv[:1] in (["-c"], ["--config"]) else []
        argv = [*options, name, *argv[len(options) :]]
    from tinymail.cli import main as cli_main

    sys.exit(cli_main(argv))


if __name__ == "__main__":
    main()
