"""Shared by every QServer service: settings, job types, errors, storage and queue access."""
