"""``python -m daphne``: the same as the ``daphne`` command."""

from .cli import CommandLineInterface

if __name__ == "__main__":
    CommandLineInterface.entrypoint()
