"""The `rlhfkit` command line (Typer + Rich). Top layer: may import every other package."""
