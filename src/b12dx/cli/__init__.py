"""The ``b12dx`` command: a thin adapter that reads input, calls the engine and prints."""
