"""One module per ``gradleak`` subcommand, each with ``register(subparsers)``."""
