"""An ASGI module with a bug, as a project might have one: importing it
raises NameError (the live-server and check tests look for this line)."""

application = undefined_in_broken_asgi  # noqa: F821
