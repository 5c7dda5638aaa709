"""Helpers shared by the tests: real processes on real sockets."""
