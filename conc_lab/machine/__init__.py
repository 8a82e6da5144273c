"""The machine a sweep runs on: its environment, its interpreters, and what could spoil a measurement."""
