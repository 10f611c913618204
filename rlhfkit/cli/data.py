"""`rlhfkit data ...`: import, validate, describe, split and export preference data."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from preference.agreement import agreement_report
from preference.errors import DataError, Issue
from preference.export import DROP_FLAGS, ExportPolicy, to_kto, to_pairs, write_rows
from preference.importers import FORMATS, ImportOptions
from preference.importers.generic import FIELDS as MAPPABLE
from preference.ingest import import_file, scan
from preference.schema import PreferenceRecord
from preference.split import split_by_prompt
from preference.store import PreferenceStore, StoreError, save_preferences
from rlhfkit.cli.config_options import Typer
from rlhfkit.cli.console import console, err_console, fail, issue_table, row_progress, summary_table
from rlhfkit.core.errors import RlhfkitError

app = Typer(help="Import, validate, describe, split and export preference data.", no_args_is_help=True)

FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help=f"Input format: {', '.join(FORMATS)} "
                                               "(detected when omitted).")]
MapOpt = Annotated[list[str] | None, typer.Option("--map", help="FIELD=COLUMN: read an rlhfkit field from another "
                                                  "column, e.g. --map prompt=question. Repeatable.")]
LabelMapOpt = Annotated[list[str] | None, typer.Option("--label-map", help="VALUE=LABEL: map a label value, e.g. "
                                                       "--label-map 1=a --label-map 0=tie. Repeatable.")]
DegenerateOpt = Annotated[str | None, typer.Option("--degenerate", help="Empty or identical responses: 'error' or "
                                                   "'flag' (keep, flagged). Default depends on the format.")]
AnnotatorOpt = Annotated[str | None, typer.Option(help="Annotator id for rows without one.")]
SourceOpt = Annotated[str | None, typer.Option(help="Source name (default: the file name).")]
MaxLineOpt = Annotated[float, typer.Option(help="Skip (and report) JSONL lines and CSV values longer than this many "
                                            "MiB.")]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, target = value.partition("=")
        if not sep or not key or not target:
            fail(f"{what} expects KEY=VALUE, got {value!r}")
        out[key] = target
    return out


def _options(mapping: list[str] | None, label_map: list[str] | None, degenerate: str | None,
             annotator: str | None = None, source: str | None = None, max_line_mb: float = 8.0) -> ImportOptions:
    if degenerate not in (None, "error", "flag"):
        fail(f"--degenerate must be 'error' or 'flag', not {degenerate!r}")
    if not max_line_mb > 0:
        fail(f"--max-line-mb must be positive, not {max_line_mb}")
    fields = _pairs(mapping, "--map")
    unknown = sorted(set(fields) - set(MAPPABLE))
    if unknown:
        fail(f"--map: unknown rlhfkit field(s) {', '.join(unknown)}; fields are {', '.join(MAPPABLE)}")
    return ImportOptions(mapping=fields, label_map=_pairs(label_map, "--label-map"),
                         annotator=annotator, source=source, degenerate=degenerate,  # type: ignore[arg-type]
                         max_line_bytes=int(max_line_mb * 1024 * 1024))


def _scan_file(path: Path, format: str | None, options: ImportOptions):
    try:
        with row_progress(f"reading {path.name}") as advance:
            return scan(path, format, options, on_row=lambda _: advance())
    except (RlhfkitError, FileNotFoundError) as exc:
        fail(str(exc))


def load_records(path: Path, format: str | None, options: ImportOptions) -> tuple[list[PreferenceRecord], int]:
    """Records from a store or any importable file; returns (records, rows with errors that were skipped)."""
    try:
        if PreferenceStore.is_store(path):
            return list(PreferenceStore(path).records()), 0
    except StoreError as exc:
        fail(str(exc))
    if path.is_dir():
        fail(f"{path}: a folder but not a preference store (no store.json)")
    _, results = _scan_file(path, format, options)
    bad = sum(1 for result in results if not result.ok)
    if bad:
        err_console.print(f"[yellow]{bad} row(s) with errors skipped; `rlhfkit data validate {path}` lists them[/]")
    return [record for result in results if result.ok for record in result.records], bad


def _summarise(issues: list[Issue]) -> Counter[str]:
    return Counter(f"[{issue.field}] {issue.message}" if issue.field else issue.message for issue in issues)


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="File to import (.jsonl, .json, .csv, .parquet, optionally .gz).")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Preference store folder (created if missing).")],
    format: FormatOpt = None,
    on_error: Annotated[str, typer.Option(help="'fail': import nothing if any row is bad; 'quarantine': import the "
                                          "valid rows, write rejected ones with reasons to a side file.")] = "fail",
    quarantine: Annotated[Path | None, typer.Option(help="Where rejected rows go (default: inside the store).")] = None,
    mapping: MapOpt = None,
    label_map: LabelMapOpt = None,
    annotator: AnnotatorOpt = None,
    source: SourceOpt = None,
    degenerate: DegenerateOpt = None,
    max_line_mb: MaxLineOpt = 8.0,
) -> None:
    """Import judgments from FILE into a preference store (atomically: all valid rows or nothing)."""
    if on_error not in ("fail", "quarantine"):
        fail(f"--on-error must be 'fail' or 'quarantine', not {on_error!r}")
    options = _options(mapping, label_map, degenerate, annotator, source, max_line_mb)
    target = PreferenceStore(store)
    try:
        with row_progress(f"importing {file.name}") as advance:
            report = import_file(file, target, format, options, on_error,  # type: ignore[arg-type]
                                 quarantine, on_row=lambda _: advance())
    except DataError as exc:
        err_console.print(issue_table(exc.issues, "errors", limit=50))
        fail(str(exc).splitlines()[0] + (f" (showing 50 of {len(exc.issues)})" if len(exc.issues) > 50 else ""))
    except (RlhfkitError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(summary_table(f"imported {file.name} ({report.format}) into {store}", {
        "rows read": report.rows_read, "judgments imported": report.records_imported,
        "  of which replace an earlier judgment": report.superseding,
        "already in the store, unchanged": report.unchanged, "rows rejected": report.rows_rejected,
        **{f"flagged {flag}": count for flag, count in sorted(report.flags.items())},
        "judgments in store": len(target)}, "count"))
    if report.repeated_elsewhere:
        console.print(f"[yellow]warning:[/] {report.repeated_elsewhere} judgment(s) are of pairs their annotator "
                      f"already judged in the store under another source ({', '.join(report.repeated_sources[:3])}): "
                      "a copy of an imported file counts twice; `--source NAME` imports it as that source, whose "
                      "judgments it then replaces")
    for message, count in _summarise(report.warnings).most_common():
        console.print(f"[yellow]warning[/] x{count}: {escape(message)}")
    flagged = [w for w in report.warnings if "flagged" in w.message]
    if flagged:
        console.print(issue_table(flagged, f"flagged pairs (kept; export drops {', '.join(DROP_FLAGS)})", limit=50))
    if report.quarantine:
        console.print(f"[yellow]{report.rows_rejected} rejected row(s) with reasons written to {report.quarantine}[/]")


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="A file to check (any importable format) or a preference store.")],
    format: FormatOpt = None,
    mapping: MapOpt = None,
    label_map: LabelMapOpt = None,
    degenerate: DegenerateOpt = None,
    annotator: AnnotatorOpt = None,
    source: SourceOpt = None,
    max_line_mb: MaxLineOpt = 8.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every issue as JSON here.")] = None,
) -> None:
    """List every problem in PATH, each with file, line and field. Exit code 1 if there is any error."""
    if PreferenceStore.is_store(path):
        records, _ = load_records(path, None, ImportOptions())
        console.print(f"[green]{escape(str(path))}: store is readable, {len(records)} judgments[/]")
        return
    options = _options(mapping, label_map, degenerate, annotator, source, max_line_mb)
    fmt, results = _scan_file(path, format, options)
    issues = [issue for result in results for issue in result.issues]
    errors = [issue for issue in issues if issue.severity == "error"]
    warnings = [issue for issue in issues if issue.severity == "warning"]
    if json_out:
        json_out.write_text(json.dumps([issue.as_dict() for issue in issues], indent=1, ensure_ascii=False))
    if errors:
        err_console.print(issue_table(errors, f"{len(errors)} error(s)"))
    if warnings:
        console.print(issue_table(warnings, f"{len(warnings)} warning(s)"))
    good = sum(1 for result in results if result.ok)
    console.print(f"{path} ({fmt}): {len(results)} rows, {good} valid, {len(results) - good} with errors, "
                  f"{len(warnings)} warning(s)")
    if errors:
        raise typer.Exit(1)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


@app.command()
def stats(
    path: Annotated[Path, typer.Argument(help="A preference store or any importable file.")],
    format: FormatOpt = None,
    mapping: MapOpt = None,
    label_map: LabelMapOpt = None,
    degenerate: DegenerateOpt = None,
    annotator: AnnotatorOpt = None,
    source: SourceOpt = None,
    max_line_mb: MaxLineOpt = 8.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the statistics as JSON here.")] = None,
) -> None:
    """Label counts, majority labels and inter-annotator agreement (Fleiss, Krippendorff, Cohen, position bias)."""
    records, skipped = load_records(path, format, _options(mapping, label_map, degenerate, annotator, source,
                                                           max_line_mb))
    if not records:
        fail(f"{path}: no valid judgments")
    report = agreement_report(records).to_dict()
    report["pairs"] = len({record.pair_id for record in records})
    report["rows_skipped"] = skipped
    if json_out:
        json_out.write_text(json.dumps(report, indent=1, ensure_ascii=False))

    overview = Table(title=f"{path.name}: overview")
    overview.add_column("statistic")
    overview.add_column("value", justify="right")
    for key in ("n_judgments", "pairs", "n_units", "n_annotators", "unanimous_units", "percent_agreement",
                "fleiss_kappa", "krippendorff_alpha"):
        overview.add_row(key.replace("_", " "), _fmt(report.get(key)))
    bias = report.get("position_bias") or {}
    overview.add_row("position bias: share of 'a' as shown", _fmt(bias.get("share_a")))
    overview.add_row("position bias: p-value (vs 0.5)", _fmt(bias.get("p_value")))
    console.print(overview)

    labels = Table(title="labels")
    labels.add_column("label")
    labels.add_column("judgments", justify="right")
    labels.add_column("majority (per unit)", justify="right")
    for label in sorted(set(report["label_counts"]) | set(report["majority_counts"])):
        labels.add_row(label, str(report["label_counts"].get(label, 0)), str(report["majority_counts"].get(label, 0)))
    console.print(labels)

    if report.get("cohen_kappa"):
        cohen = Table(title="pairwise Cohen's kappa")
        for column in ("annotator 1", "annotator 2", "kappa", "shared units"):
            cohen.add_column(column)
        for entry in report["cohen_kappa"]:
            cohen.add_row(entry["annotator_1"], entry["annotator_2"], _fmt(entry["kappa"]), str(entry["n"]))
        console.print(cohen)
    if report.get("annotators"):
        people = Table(title="each annotator against the consensus")
        for column in ("annotator", "units", "agreement", "kappa"):
            people.add_column(column)
        for name, entry in sorted(report["annotators"].items()):
            people.add_row(name, str(entry["n"]), _fmt(entry["agreement_with_consensus"]),
                           _fmt(entry["kappa_with_consensus"]))
        console.print(people)


@app.command()
def split(
    store: Annotated[Path, typer.Argument(help="Preference store (or importable file) to split.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder that receives one store per split.")],
    ratio: Annotated[list[str] | None, typer.Option("--ratio", help="NAME=SHARE, repeatable; default train=0.8 "
                                                    "test=0.2.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the prompt shuffle.")] = 0,
    format: FormatOpt = None,
) -> None:
    """Split by prompt: every judgment of one prompt lands in the same split."""
    ratios_raw = _pairs(ratio, "--ratio") or {"train": "0.8", "test": "0.2"}
    try:
        ratios = {name: float(value) for name, value in ratios_raw.items()}
    except ValueError:
        fail(f"--ratio values must be numbers: {ratios_raw}")
    bad = [name for name in ratios if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", "..")]
    if bad:
        fail(f"split names must be plain folder names (letters, digits, _ . -): {bad}")
    taken = [str(out / name) for name in ratios if (out / name).exists()]
    if taken:
        fail(f"output folder(s) already exist: {', '.join(taken)}; choose another --out")
    records, _ = load_records(store, format, ImportOptions())
    try:
        parts = split_by_prompt(records, ratios, seed)
        for name, part in parts.items():
            save_preferences(part, out / name, note=f"split {name} of {store} (seed {seed})")
    except RlhfkitError as exc:
        fail(str(exc))
    for name, part in parts.items():
        if not part:
            err_console.print(f"[yellow]warning:[/] split {name!r} is empty: too few prompts for these ratios")
    table = Table(title=f"split of {store} (seed {seed})")
    for column in ("split", "judgments", "prompts", "folder"):
        table.add_column(column)
    for name, part in parts.items():
        prompts = {json.dumps(r.prompt, sort_keys=True) for r in part}
        table.add_row(name, str(len(part)), str(len(prompts)), str(out / name))
    console.print(table)


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="Preference store (or importable file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: .jsonl or .parquet.")],
    to: Annotated[str, typer.Option(help="'reward' or 'dpo' (columns prompt, chosen, rejected and, with strengths, "
                                    "margin) or 'kto' (prompt, completion, label).")] = "reward",
    ties: Annotated[str, typer.Option(help="'drop' or 'margin0' (both orders, margin 0; KTO: both desirable).")
                    ] = "drop",
    both_bad: Annotated[str, typer.Option(help="'drop', 'tie' or 'negatives' (KTO: both undesirable).")] = "drop",
    aggregate: Annotated[str, typer.Option(help="'majority', 'unanimous', 'weighted' or 'none' (every judgment).")
                         ] = "majority",
    min_agreement: Annotated[float, typer.Option(help="Drop pairs whose consensus agreement is lower.")] = 0.0,
    keep_flagged: Annotated[bool, typer.Option(help=f"Keep pairs flagged {', '.join(DROP_FLAGS)}.")] = False,
    format: FormatOpt = None,
) -> None:
    """Export to TRL's reward / DPO or KTO format; every dropped or transformed pair is counted in the report."""
    if to not in ("reward", "dpo", "kto"):
        fail(f"--to must be 'reward', 'dpo' or 'kto', not {to!r}")
    if aggregate not in ("majority", "unanimous", "weighted", "none"):
        fail(f"--aggregate must be majority, unanimous, weighted or none, not {aggregate!r}")
    if not 0.0 <= min_agreement <= 1.0:
        fail(f"--min-agreement is a share between 0 and 1, not {min_agreement}")
    records, _ = load_records(source, format, ImportOptions())
    policy = ExportPolicy(ties=ties, both_bad=both_bad, aggregate=aggregate,  # type: ignore[arg-type]
                          min_agreement=min_agreement, drop_flags=() if keep_flagged else DROP_FLAGS)
    try:
        rows, report = (to_kto if to == "kto" else to_pairs)(records, policy)
        if rows:  # never replace an existing output with an empty file
            write_rows(rows, out)
    except RlhfkitError as exc:
        fail(str(exc))
    console.print(summary_table(f"export to {to}: {out}", {
        "judgments in": report.judgments_in, "pairs (after aggregation)": report.pairs_in,
        **{f"kept: {key}": count for key, count in sorted(report.kept.items())},
        **{f"dropped: {key}": count for key, count in sorted(report.dropped.items())},
        "rows written": report.rows_out}, "count"))
    console.print(f"policy: ties={ties}, both_bad={both_bad}, aggregate={aggregate}, min_agreement={min_agreement}")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    if not rows:
        fail(f"no rows to export after applying the policy (see the counts above); {out} was not written")
