"""Test-only osiris plugins (installed by the test suite, never by users)."""
