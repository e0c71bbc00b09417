"""The upstream client `qserver-connect`, unchanged, against our stack (its own virtualenv)."""
