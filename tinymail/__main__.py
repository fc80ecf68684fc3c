"""Entry point for `tinymail`, `python -m tinymail` and the zipapp.

Invoked as `sendmail`, `mailq` or `newaliases` (argv[0], e.g. through a
symlink), it behaves as that command, as /usr/sbin/sendmail does.
`sendmail` is dispatched before cli.py (argparse) is imported: it must start fast.
"""

import os
import sys


def sendmail_argv(args: list[str]) -> tuple[str | None, list[str]] | None:
    """(config path, sendmail args) for `tinymail [-c FILE] sendmail ...`, else None."""
    config: str | None = None
    if len(args) >= 2 and args[0] in ("-c", "--config"):
        config, args = args[1], args[2:]
    elif args and args[0].startswith("--config="):
        config, args = args[0].partition("=")[2], args[1:]
    if args and args[0] == "sendmail":
        return config, args[1:]
    return None


def main() -> None:
    """Dispatch on the program name, then run the CLI."""
    name = os.path.basename(sys.argv[0])
    sendmail = (None, sys.argv[1:]) if name == "sendmail" else sendmail_argv(sys.argv[1:])
    if sendmail is not None:
        from tinymail.sendmail import main as sendmail_main

        exit_now(sendmail_main(sendmail[1], config_path=sendmail[0]))
    argv = [name, *sys.argv[1:]] if name in ("mailq", "newaliases") else sys.argv[1:]
    from tinymail.cli import main as cli_main

    sys.exit(cli_main(argv))


def exit_now(status: int) -> None:
    """Exit with `status`, skipping the interpreter's teardown when nothing needs it.

    Freeing every object and module at exit costs about as much CPU as a fifth of a bare
    interpreter's start-up, a large part of `sendmail`'s latency budget. Skipping it is safe
    when the standard streams are flushed, no atexit callback is registered (logging, trio and
    weakref.finalize register one) and no thread module is loaded: what the command wrote is
    already on disk through os-level descriptors (the queue file and directory are fsynced).
    """
    import atexit

    ncallbacks = getattr(atexit, "_ncallbacks", None)  # CPython's count of registered callbacks
    if ncallbacks is not None and ncallbacks() == 0 and "threading" not in sys.modules:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None: started with that descriptor closed
                    stream.flush()
        except (OSError, ValueError):
            pass  # e.g. a closed pipe: the normal exit below reports it as Python would
        else:
            os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    main()
