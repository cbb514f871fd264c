"""``python -m irmin.server.xenstore``: the same as ``irmin xenstored``."""

from irmin.server.cli_xenstored import xenstored

if __name__ == "__main__":
    xenstored(prog_name="python -m irmin.server.xenstore")
