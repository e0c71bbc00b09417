"""Tests of the client package (client/, qserver_client)."""
