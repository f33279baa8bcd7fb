"""The example application: a registration form whose addresses are confirmed
with Flask-Confirm. Run it with ``python -m example``; see ``example/app.py``."""
