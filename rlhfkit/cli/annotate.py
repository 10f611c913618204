"""`rlhfkit annotate ...`: a Label Studio server for human preferences, push pairs, pull judgments, accounts, status,
and machine annotators (`label`, `select`)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from annotation.labelstudio.accounts import invite as invite_user
from annotation.labelstudio.client import KEY_ENV, URL_ENV, LabelStudioClient, LabelStudioError
from annotation.labelstudio.server import LocalServer, connect_running, server_file
from annotation.labelstudio.sync import ensure_project, open_project, status
from annotation.labelstudio.sync import pull as pull_project
from annotation.labelstudio.sync import push as push_pairs
from preference.errors import DataError
from preference.pairs import Pair, pairs_from_records, read_pairs
from preference.store import PreferenceStore, StoreError
from rlhfkit.cli import annotate_loop, annotate_machine
from rlhfkit.cli.config_options import Typer
from rlhfkit.cli.console import console, err_console, fail, row_progress, summary_table
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import RlhfkitError
from rlhfkit.core.settings import label_studio_dir

app = Typer(help="Collect pairwise preferences: Label Studio for people, machine annotators, active selection.",
                  no_args_is_help=True)
annotate_machine.register(app)
annotate_loop.register(app)

DEFAULT_PROJECT = "rlhfkit preferences"
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project title or id.")]


def connect() -> LabelStudioClient:
    """LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY if set, else the local server started by `rlhfkit annotate serve`."""
    try:
        client = connect_running()
    except LabelStudioError as exc:
        fail(str(exc))
    if client is None:
        fail(f"no Label Studio server: start one with `rlhfkit annotate serve`, or set {URL_ENV} and {KEY_ENV} for "
             "an existing one")
    return client


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind; keep 127.0.0.1 unless annotators reach this machine "
                                      "over a network you trust.")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help="Label Studio data folder (default: under the rlhfkit "
                                                  "home).")] = None,
) -> None:
    """Start a local Label Studio (own virtualenv, SQLite, invite-only sign-up) and keep it running until Ctrl-C."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] binding to {host}: anyone who can reach it sees the login page")
    server = LocalServer(port=port, host=host, data_dir=data_dir)

    def stop_on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too (kill, systemd): Label Studio runs in its own session and would live on

    # Before the server starts: a signal at any moment after it (while starting, or right as server.json appears)
    # must stop it, never leave it running.
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    written = False  # server.json is ours to remove only once this server wrote it (another may be running)
    try:
        with row_progress("starting Label Studio (the first start migrates its database, ~30 s)"):
            try:
                server.start()
            except LabelStudioError as exc:
                fail(str(exc))
        atomic_write_text(server_file(), json.dumps({"url": server.url, "pid": server.process.pid}))
        written = True
        credentials = server.credentials
        console.print(summary_table("Label Studio is running", {
            "URL": server.url, "admin login": credentials.email, "admin password": credentials.password,
            "API token": f"stored 0600 in {label_studio_dir() / 'credentials.json'}", "log": server.log_path}))
        console.print("Create a project and send pairs: [bold]rlhfkit annotate push --pairs PAIRS.jsonl[/]; "
                      "accounts for annotators: [bold]rlhfkit annotate invite EMAIL[/]. Ctrl-C stops the server.")
        while server.process and server.process.poll() is None:
            time.sleep(1)
        fail(f"Label Studio exited with code {server.process.returncode}; see {server.log_path}")
    except KeyboardInterrupt:
        console.print("stopping Label Studio ...")
    finally:
        server.stop()
        if written:
            server_file().unlink(missing_ok=True)


def _load_pairs(pairs_file: Path | None, store: Path | None) -> list[Pair]:
    if (pairs_file is None) == (store is None):
        fail("give exactly one of --pairs FILE or --store DIR")
    try:
        if pairs_file is not None:
            return read_pairs(pairs_file)
        return pairs_from_records(PreferenceStore(store).records())
    except DataError as exc:
        fail(str(exc))
    except (FileNotFoundError, StoreError) as exc:
        fail(str(exc))


@app.command()
def push(
    pairs: Annotated[Path | None, typer.Option("--pairs", help="Pairs file (JSONL/Parquet/CSV: prompt, "
                                               "response_a, response_b, metadata).")] = None,
    store: Annotated[Path | None, typer.Option(help="Or: the pairs of a preference store.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    overlap: Annotated[int, typer.Option(help="Annotators per task (Label Studio's maximum_annotations).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Tasks per request.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the A/B position shuffle (recorded per task).")] = 0,
    preannotate: Annotated[str | None, typer.Option(help="Pre-fill choices with a machine annotator: 'verifier', "
                                                    "'judge' or 'reward'; off by default because pre-filled choices "
                                                    "anchor annotators.")] = None,
    reward_model: Annotated[str | None, typer.Option(help="Reward model folder for --preannotate reward.")] = None,
    judge_lm: Annotated[str, typer.Option(help="LM for --preannotate judge (see `annotate label`).")
                        ] = annotate_machine.DEFAULT_JUDGE_LM,
) -> None:
    """Send pairs as tasks (A/B randomised and recorded). Idempotent: pairs already in the project are skipped."""
    chosen = _load_pairs(pairs, store)
    client = connect()
    preannotator = (annotate_machine.build_annotator(preannotate, judge_lm=judge_lm, reward_model=reward_model)
                    if preannotate else None)
    try:
        target = ensure_project(client, project, overlap) if not str(project).isdigit() else open_project(client,
                                                                                                         project)
        with row_progress(f"pushing {len(chosen)} pairs", total=len(chosen)) as advance:
            report = push_pairs(client, target["id"], chosen, seed=seed, batch_size=batch_size,
                                preannotator=preannotator, on_batch=lambda n: [advance() for _ in range(n)])
    except RlhfkitError as exc:  # LabelStudioError included
        fail(str(exc))
    console.print(summary_table(f"pushed to project {target['title']!r} (id {target['id']})", {
        "pairs asked for": report.requested, "already in the project": report.already_there,
        "tasks created": report.created, "batches": report.batches, "recovered interruptions": report.recoveries,
        "label here": f"{client.url}/projects/{target['id']}/data"}))


@app.command()
def pull(
    store: Annotated[Path, typer.Option(help="Preference store that receives the judgments.")],
    project: ProjectOpt = DEFAULT_PROJECT,
) -> None:
    """Bring new and edited judgments into a preference store (one record per annotator, positions undone)."""
    client = connect()
    try:
        target = open_project(client, project)
        report = pull_project(client, target["id"], PreferenceStore(store))
    except (LabelStudioError, StoreError) as exc:
        fail(str(exc))
    console.print(summary_table(f"pulled project {target['title']!r} into {store}", {
        "new judgments": report.new, "edited judgments": report.updated, "unchanged": report.unchanged,
        "skipped by annotators": report.skipped, "rejected (malformed)": len(report.rejected),
        "judgments in store": len(PreferenceStore(store))}))
    if report.quarantine:
        err_console.print(f"[yellow]{len(report.rejected)} malformed annotation(s) written with reasons to "
                          f"{report.quarantine}[/]")


@app.command()
def invite(
    emails: Annotated[list[str], typer.Argument(help="Annotators' email addresses.")],
    password: Annotated[str | None, typer.Option(help="Password for a single new account (default: generated).")
                        ] = None,
) -> None:
    """Create annotator accounts through Label Studio's invite flow and print each login."""
    if password and len(emails) > 1:
        fail("--password sets one account's password; leave it out to generate one per annotator")
    client = connect()
    table = Table(title=f"annotator logins for {client.url}")
    for column in ("email", "password", "log in at"):
        table.add_column(column)
    for email in emails:
        try:
            login = invite_user(client, email, password)
        except LabelStudioError as exc:
            fail(str(exc))
        table.add_row(login.email, login.password, f"{client.url}/user/login/")
    console.print(table)
    console.print("Hand each annotator their own login; passwords are not stored by rlhfkit.")


@app.command("status")
def status_cmd(
    project: ProjectOpt = DEFAULT_PROJECT,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the status as JSON here.")] = None,
) -> None:
    """Progress, per-annotator counts, agreement so far, and the pairs annotators disagree on."""
    client = connect()
    try:
        info = status(client, open_project(client, project)["id"])
    except LabelStudioError as exc:
        fail(str(exc))
    if json_out:
        json_out.write_text(json.dumps(info, indent=1))
    agreement = info["agreement"] or {}
    console.print(summary_table(f"project {info['project']['title']!r} (overlap {info['project']['overlap']})", {
        "tasks": info["tasks"], "tasks started": info["tasks_started"], "tasks complete": info["tasks_complete"],
        "judgments": info["annotations"], "skipped": info["skipped"],
        "Krippendorff's alpha": _round(agreement.get("krippendorff_alpha")),
        "percent agreement": _round(agreement.get("percent_agreement")),
        "pairs with disagreement": len(info["disagreements"])}))
    people = Table(title="per annotator")
    people.add_column("annotator")
    people.add_column("judgments", justify="right")
    for name, count in sorted(info["per_annotator"].items()):
        people.add_row(name, str(count))
    console.print(people)
    if info["disagreements"]:
        console.print("disagreements (task: labels): " + ", ".join(
            f"{d['task']}: {'/'.join(d['labels'])}" for d in info["disagreements"][:30]))


def _round(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
