"""Django management commands of the ``daphne`` app (see ``commands``)."""
