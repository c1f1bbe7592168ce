"""``runserver``: Django's development server command, served by daphne."""
