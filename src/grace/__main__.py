"""``python -m grace`` runs the CLI."""

from grace.cli import main

main()
