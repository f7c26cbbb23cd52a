"""The `orderly` command: run the stack and operate it."""
