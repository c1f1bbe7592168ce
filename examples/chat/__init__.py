"""A multi-room chat served by daphne in channel-layer mode (see ``app.py``)."""
