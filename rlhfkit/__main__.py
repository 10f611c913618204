"""`python -m rlhfkit ...` runs the command line; `accelerate launch -m rlhfkit policy dpo ...` runs it on many
processes (each process runs the same command; TRL's trainers share the work)."""

from rlhfkit.cli.main import app

app(prog_name="rlhfkit")
