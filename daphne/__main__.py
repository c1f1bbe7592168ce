"""``python -m daphne`` and the ``daphne`` command."""

from __future__ import annotations

import os
import sys

from .systemd import VARIABLES


def main() -> None:
    """Run the command line on ``sys.argv``."""
    # Read before daphne.cli imports Twisted, whose endpoints module takes
    # some of them out of the environment (see daphne.systemd).
    activation = {name: os.environ[name] for name in VARIABLES if name in os.environ}
    from .cli import CommandLineInterface

    CommandLineInterface(activation=activation).run(sys.argv[1:])


if __name__ == "__main__":
    main()
