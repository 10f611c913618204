"""The run's report: one self-contained HTML page (plots embedded, no network) plus `metrics.json`.

It reads only what the stages saved in the work folder, so it can be rebuilt at any time (`--from report`).
Sections: stage timings, reward model (accuracy with its interval, calibration plot), policy before / after (IFEval
pass rates with intervals, the paired change, the reward win rate, training curves), DSPy scores, the instruction
search (score per generation), and example answers before and after.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from rlhfkit.core.atomic import atomic_write_text

if TYPE_CHECKING:
    from rlhfkit.pipeline.stages import Context

TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlhfkit run: {{ work }}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;max-width:1060px;margin:24px auto;padding:0 16px;
color:#1d2330}
h1{font-size:24px;margin-bottom:2px} h2{font-size:19px;border-bottom:1px solid #dde;padding-bottom:4px;margin-top:30px}
.sub{color:#667} table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #dde;padding:4px 9px;
text-align:left;vertical-align:top} th{background:#f3f5f9} td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dde;border-radius:8px;padding:10px 14px;
min-width:200px}.card b{font-size:22px;display:block}.good{color:#137333}.bad{color:#b3261e}
img{max-width:100%;border:1px solid #eee} img.half{max-width:560px}
pre{white-space:pre-wrap;margin:0;font:13px/1.35 ui-monospace,monospace}
.note{color:#667;font-size:13px} p.headline{font-size:16px;margin:6px 0}
</style></head><body>
<h1>rlhfkit run</h1><div class="sub">{{ work }} · policy <code>{{ config.policy.model }}</code> · reward backbone
<code>{{ config.reward.model }}</code> · labels: {{ config.label.annotator }} · update: {{ config.update.method }}
· rlhfkit {{ version }}</div>

{% for line in headline %}<p class="headline {{ 'good' if line.significant else '' }}">{{ line.text }}</p>
{% endfor %}
<div class="cards">
{% for card in cards %}<div class="card">{{ card.title }}<b class="{{ card.tone }}">{{ card.value }}</b>
<span class="note">{{ card.note }}</span></div>{% endfor %}
</div>

{% if noise_note %}<p class="note">{{ noise_note }}</p>{% endif %}

<h2>Stages</h2>
<table><tr><th>stage</th><th>seconds</th><th>result</th></tr>
{% for row in stages %}<tr><td>{{ row.name }}</td><td class="n">{{ row.seconds }}</td><td><code>{{ row.result }}</code>
</td></tr>{% endfor %}
<tr><th>total</th><th class="n">{{ total_s }}</th><th class="note">the report stage's own time is in metrics.json</th>
</tr></table>

<h2>Reward model</h2>
{% if reward.accuracy is not none %}
<p>Held-out pairwise accuracy <b>{{ "%.3f"|format(reward.accuracy) }}</b> (95% CI {{ reward.ci }}) on
{{ reward.n }} decisive pairs the model never saw (ties reported apart); expected calibration error
{{ "%.3f"|format(reward.ece) }}.</p>
{% else %}<p class="note">No held-out evaluation: {{ reward.error }}</p>{% endif %}
{% if images.reward %}<img alt="reward model evaluation" src="{{ images.reward }}">{% endif %}
{% if images.reward_curve %}<img class="half" alt="reward model accuracy against labeled pairs"
src="{{ images.reward_curve }}">{% endif %}

<h2>Policy before and after</h2>
{% if policy_rows %}
<table><tr><th>IFEval level (held-out)</th><th>before</th><th>after</th><th>change (paired 95% CI)</th></tr>
{% for row in policy_rows %}<tr><td>{{ row.level }}</td><td class="n">{{ row.before }}</td><td class="n">{{ row.after }}
</td><td class="n {{ row.tone }}">{{ row.delta }}</td></tr>{% endfor %}</table>
{% endif %}
{% if win %}<p>Reward win rate of the updated policy over the starting one: <b>{{ win }}</b></p>{% endif %}
{% if images.evaluate %}<img class="half" alt="pass rates" src="{{ images.evaluate }}">{% endif %}
{% if images.by_instruction %}<img class="half" alt="pass rate by instruction type"
src="{{ images.by_instruction }}">{% endif %}
{% if images.curves %}<h3>Training curves ({{ config.update.method }})</h3><img alt="training curves"
src="{{ images.curves }}">{% endif %}

<h2>DSPy scoring</h2>
{% if dspy %}<table><tr><th>policy</th><th>dspy.Evaluate score (verifier + reward, 0-1)</th>
<th>mean reward (RewardScore)</th><th>prompts</th></tr>
{% for row in dspy %}<tr><td>{{ row.name }}</td><td class="n">{{ row.score }}</td><td class="n">{{ row.reward }}</td>
<td class="n">{{ row.n }}</td></tr>{% endfor %}</table>{% else %}<p class="note">{{ dspy_note }}</p>{% endif %}

<h2>Instruction search</h2>
{% if search %}<p>Chosen instruction (held-out score {{ search.heldout }} vs {{ search.start }} for the start,
{{ search.calls }} policy calls{% if not search.confirmed %}; <b>not confirmed</b> on held-out prompts, so the start
is kept{% endif %}):</p><pre>{{ search.instruction }}</pre>
{% if images.search %}<img class="half" alt="instruction search" src="{{ images.search }}">{% endif %}
{% else %}<p class="note">{{ search_note }}</p>{% endif %}

<h2>Example answers (held-out)</h2>
{% for ex in examples %}<h3>{{ ex.prompt }}</h3>
<table><tr><th>before {{ ex.before_mark }}</th><th>after {{ ex.after_mark }}</th></tr>
<tr><td><pre>{{ ex.before }}</pre></td><td><pre>{{ ex.after }}</pre></td></tr></table>
{% else %}<p class="note">none</p>{% endfor %}
</body></html>
""")

LEVEL_NAMES = {"prompt_loose": "prompt-level loose", "prompt_strict": "prompt-level strict",
               "instruction_loose": "instruction-level loose", "instruction_strict": "instruction-level strict"}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _image(path: Path) -> str | None:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode() if path.exists() else None


def _ci(low: Any, high: Any) -> str:
    return f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else "n/a"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _policy_rows(evaluation: dict[str, Any]) -> list[dict[str, str]]:
    after, before = evaluation.get("verifier", {}), evaluation.get("reference", {}).get("verifier", {})
    rows = []
    for level, name in LEVEL_NAMES.items():
        if level not in after or level not in before:
            continue
        delta = evaluation.get("verifier_delta", {}).get(level, {})
        tone = ("good" if (delta.get("ci_low") or 0) > 0 else "bad" if (delta.get("ci_high") or 0) < 0 else "")
        rows.append({"level": name, "before": f"{before[level]['value']:.3f}", "after": f"{after[level]['value']:.3f}",
                     "delta": f"{delta.get('delta', 0):+.3f} {_ci(delta.get('ci_low'), delta.get('ci_high'))}",
                     "tone": tone})
    return rows


def _examples(ctx: Context, count: int) -> list[dict[str, str]]:
    """Held-out answers before and after; prompts whose verdict changed first."""
    from policy.evaluate import verify_answers
    from policy.generate import read_candidates

    folder = ctx.work / "evaluate"
    if count == 0 or not (folder / "answers-policy.jsonl").exists():
        return []
    after = {r["key"]: r["candidates"][0] for r in read_candidates(folder / "answers-policy.jsonl")}
    before = {r["key"]: r["candidates"][0] for r in read_candidates(folder / "answers-reference.jsonl")}
    items = [item for item in ctx.prompts("heldout") if item.key in after and item.key in before]
    passed_after = {r["key"]: r["loose"] == r["n"] for r in verify_answers(items, after)}
    passed_before = {r["key"]: r["loose"] == r["n"] for r in verify_answers(items, before)}
    items.sort(key=lambda item: passed_after.get(item.key) == passed_before.get(item.key))

    def mark(passed: bool | None) -> str:
        return "" if passed is None else "✓ follows the instruction" if passed else "✗ breaks the instruction"

    return [{"prompt": item.prompt if isinstance(item.prompt, str) else item.prompt[-1]["content"],
             "before": before[item.key], "after": after[item.key], "before_mark": mark(passed_before.get(item.key)),
             "after_mark": mark(passed_after.get(item.key))} for item in items[:count]]


def write_report(ctx: Context) -> Path:
    """Write `report.html` into the work folder from what the stages saved; returns its path."""
    from rlhfkit import __version__

    work = ctx.work
    manifest = _json(work / "manifest.json")
    stages = manifest.get("stages", {})
    reward_eval, evaluation = _json(work / "reward" / "eval.json"), _json(work / "evaluate" / "eval.json")
    dspy_scores, search = _json(work / "dspy" / "scores.json"), _json(work / "instructions" / "result.json")
    reward_result = stages.get("reward", {}).get("result", {})
    accuracy_ci = reward_eval.get("accuracy_ci") or [None, None]
    reward = {"accuracy": reward_eval.get("accuracy"), "ci": _ci(*accuracy_ci),
              "n": reward_eval.get("counts", {}).get("decisive"), "ece": reward_eval.get("calibration", {}).get("ece"),
              "error": reward_result.get("eval_error", "not run")}
    win_rate = evaluation.get("win_rate", {})
    win = (f"{win_rate['value']:.3f} {_ci(win_rate.get('ci_low'), win_rate.get('ci_high'))} over "
           f"{win_rate['n_prompts']} prompts" if "value" in win_rate else "")
    cards = []
    if reward["accuracy"] is not None:
        cards.append({"title": "reward model, held-out accuracy", "value": f"{reward['accuracy']:.3f}",
                      "note": f"95% CI {reward['ci']}", "tone": ""})
    delta = evaluation.get("verifier_delta", {}).get("instruction_loose")
    if delta:
        tone = "good" if delta["ci_low"] > 0 else "bad" if delta["ci_high"] < 0 else ""
        cards.append({"title": "IFEval pass rate change (instruction, loose)", "value": f"{delta['delta']:+.3f}",
                      "note": f"95% CI {_ci(delta['ci_low'], delta['ci_high'])}", "tone": tone})
    if "value" in win_rate:
        cards.append({"title": "reward win rate after vs before", "value": f"{win_rate['value']:.3f}",
                      "note": f"95% CI {_ci(win_rate.get('ci_low'), win_rate.get('ci_high'))}", "tone": ""})
    if search:
        cards.append({"title": "instruction search, held-out score", "value": f"{search['heldout_score']:.3f}",
                      "note": f"start {search['start_heldout_score']:.3f}", "tone": ""})
    small = delta is not None and delta["ci_low"] <= 0 <= delta["ci_high"]
    noise_note = ("Every interval here is a 95% bootstrap interval over prompts. An interval that contains 0 (or 0.5 "
                  "for a win rate) means this run cannot tell the change from noise: the default job is sized to "
                  "finish in minutes on a laptop CPU. Give it more prompts and candidates (see docs/pipeline.md); "
                  "benchmarks/dpo_quality.py shows what a larger DPO round does.") if small else ""
    from rlhfkit.pipeline.headline import headlines

    page = TEMPLATE.render(
        noise_note=noise_note, headline=headlines(stages),
        work=str(work), config=ctx.config, version=__version__, cards=cards,
        stages=[{"name": name, "seconds": f"{entry['seconds']:.1f}",
                 "result": ", ".join(f"{k}={_fmt(v)}" for k, v in entry["result"].items()
                                     if not isinstance(v, (dict, list)) and v is not None)}
                for name, entry in stages.items()],
        total_s=f"{sum(entry['seconds'] for entry in stages.values()):.1f}",
        reward=reward, policy_rows=_policy_rows(evaluation), win=win,
        dspy=[{"name": name, "score": f"{entry['score']:.3f}", "reward": f"{entry['mean_reward']:.3f}",
               "n": len(entry["answers"])} for name, entry in dspy_scores.get("policies", {}).items()],
        search={"instruction": search["best_instruction"], "heldout": f"{search['heldout_score']:.3f}",
                "start": f"{search['start_heldout_score']:.3f}", "calls": search["policy_calls"],
                "confirmed": search["confirmed"]} if search else None,
        dspy_note=dspy_scores.get("skipped", "not run"),
        search_note=stages.get("instructions", {}).get("result", {}).get("skipped", "not run"),
        examples=_examples(ctx, ctx.config.evaluate.examples),
        images={"reward": _image(work / "reward" / "eval.png"), "reward_curve": _image(work / "reward" / "curve.png"),
                "evaluate": _image(work / "evaluate" / "eval.png"),
                "by_instruction": _image(work / "evaluate" / "by_instruction.png"),
                "curves": _image(work / "update" / "curves.png"),
                "search": _image(work / "instructions" / "search.png")})
    path = work / "report.html"
    atomic_write_text(path, page)
    return path
