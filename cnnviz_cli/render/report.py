"""The report a person opens: a manifest (merged form) -> one self-contained static HTML page.

No network and no external assets: CSS and script are inline; thumbnails are the run's own
image files, referenced by relative path, and clicking one shows it full size.
"""

import html
import posixpath
from urllib.parse import quote

PICTURE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".webp")
CAPTION_FIELDS = ("kind", "layer", "filter", "channel", "step")
PREDICTION_FIELDS = ("predicted", "prediction", "label", "class_name")
# per-file numbers averaged in the report
METRIC_SUFFIXES = ("_auc", "_error", "_accuracy", "_hit", "_energy", "_corr", "_iou")
OTHER = "Other outputs"
# the faithfulness ranking's columns: heading -> (field, format)
RANKING_COLUMNS = {
    "rank": ("rank", "{}"), "method": ("method", "{}"), "maps": ("maps", "{}"),
    "deletion AUC ↓": ("deletion_auc", "{:.3f}"), "insertion AUC ↑": ("insertion_auc", "{:.3f}"),
    "insertion − deletion ↑": ("insertion_minus_deletion", "{:+.3f}"),
}

STYLE = """
:root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --card:#fff; --accent:#3056d3; }
* { box-sizing:border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--ink); background:#f5f6f8; }
header { padding:20px 32px; background:#1d2330; color:#fff; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header p { margin:0; color:#c7cbd4; }
main { padding:16px 32px 48px; max-width:1600px; }
section, article { background:var(--card); border:1px solid var(--line); border-radius:8px;
                   margin:16px 0; padding:12px 16px; }
h2 { font-size:17px; margin:4px 0 10px; }
h3 { font-size:13px; margin:12px 0 6px; color:var(--muted); font-weight:600;
     text-transform:uppercase; letter-spacing:.04em; }
table { border-collapse:collapse; font-size:13px; margin:4px 0 8px; }
th, td { text-align:left; padding:3px 10px 3px 0; border-bottom:1px solid var(--line);
         vertical-align:top; }
th { color:var(--muted); font-weight:500; }
td.number { text-align:right; font-variant-numeric:tabular-nums; }
details summary { cursor:pointer; font-weight:600; }
.pairs { display:grid; grid-template-columns:repeat(auto-fill, minmax(250px, 1fr));
         gap:0 28px; font-size:13px; }
.pairs div { border-bottom:1px solid var(--line); padding:3px 0; overflow-wrap:anywhere; }
.pairs span { color:var(--muted); margin-right:10px; }
.path { color:var(--muted); font-weight:400; font-size:12px; margin-left:8px; }
.pill { display:inline-block; background:#eef2ff; color:var(--accent); border-radius:10px;
        padding:1px 9px; margin-left:8px; font-size:12px; font-weight:600; }
.failure { color:#b42318; }
.gates { font-size:15px; }
.gates ul { margin:6px 0 0; padding-left:20px; font-size:13px; }
.gates.passed { background:#ecfdf3; border-color:#abefc6; color:#067647; }
.gates.failed { background:#fef3f2; border-color:#fecdca; color:#b42318; }
.techniques { display:flex; flex-wrap:wrap; gap:0 32px; }
.gallery { display:flex; flex-wrap:wrap; gap:12px; }
figure { margin:0; width:188px; }
figure a { display:flex; align-items:center; justify-content:center; height:172px;
           background:#f0f1f4; border:1px solid var(--line); border-radius:6px; }
figure img { width:184px; height:168px; object-fit:contain; }
figcaption { font-size:12px; color:var(--muted); margin-top:4px; overflow-wrap:anywhere; }
#filter { font:inherit; padding:6px 10px; width:320px; border:1px solid var(--line);
          border-radius:6px; }
dialog { border:none; border-radius:8px; padding:12px; max-width:96vw; max-height:96vh;
         background:#111; color:#ddd; }
dialog::backdrop { background:rgba(0,0,0,.75); }
dialog img { display:block; max-width:calc(96vw - 24px); max-height:calc(96vh - 64px);
             margin:auto; image-rendering:pixelated; }
dialog p { margin:8px 0 0; font-size:13px; text-align:center; }
"""

SCRIPT = """
const viewer = document.getElementById('viewer');
const big = viewer.querySelector('img');
const caption = viewer.querySelector('p');
let shown = -1;
function thumbs() {
  return [...document.querySelectorAll('a.thumb')].filter(a => a.offsetParent !== null);
}
function show(index) {
  const list = thumbs();
  if (!list.length) return;
  shown = (index + list.length) % list.length;
  big.src = list[shown].getAttribute('href');
  caption.textContent = list[shown].dataset.caption;
  if (!viewer.open) viewer.showModal();
}
document.addEventListener('click', event => {
  const link = event.target.closest('a.thumb');
  if (link) { event.preventDefault(); show(thumbs().indexOf(link)); }
  else if (event.target === viewer || event.target === big) viewer.close();
});
document.addEventListener('keydown', event => {
  if (!viewer.open) return;
  if (event.key === 'ArrowRight') show(shown + 1);
  if (event.key === 'ArrowLeft') show(shown - 1);
});
document.getElementById('filter').addEventListener('input', event => {
  const words = event.target.value.toLowerCase();
  for (const article of document.querySelectorAll('article[data-name]'))
    article.hidden = !article.dataset.name.includes(words);
});
"""


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _value(value) -> str:
    """A short, readable form of a manifest value."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_value(item) for item in value[:8])
        return f"[{shown}{', …' if len(value) > 8 else ''}]"
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_value(item)}" for key, item in value.items())
    return str(value)


def _is_scalar(value) -> bool:
    return isinstance(value, str | int | float | bool)


def score_text(record: dict) -> str:
    """A record's probability beside its score, "p 0.55 · logit -0.93" ("" without either).

    The score is named by `score_kind` (a logit, or a plain score); a score that is itself the
    probability is shown once.
    """
    probability, score = record.get("probability"), record.get("score")
    kind = record.get("score_kind", "score")
    shown = [f"p {probability:.2f}"] if isinstance(probability, float) else []
    if isinstance(score, float) and not (shown and kind == "probability"):
        shown.append(f"{kind} {score:.2f}")
    return " · ".join(shown)


def _table(rows: list[dict]) -> str:
    """An HTML table with one column per key seen in `rows`."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{_text(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="{"number" if isinstance(row.get(c), int | float) else ""}">'
            f"{_text(_value(row.get(c, '')))}</td>"
            for c in columns
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pairs(mapping: dict) -> str:
    items = "".join(
        f"<div><span>{_text(key)}</span>{_text(_value(value))}</div>"
        for key, value in (mapping or {}).items()
    )
    return f"<div class='pairs'>{items}</div>"


def _run_section(number: int, run: dict) -> str:
    title = f"cnnviz {run.get('command')}"
    where = "" if run.get("folder") in (None, ".") else f" · {run['folder']}"
    return (
        f"<section><details{' open' if number == 0 else ''}><summary>{_text(title + where)}"
        f"<span class='path'>{_text(run.get('created') or '')}</span></summary>"
        f"<h3>Model</h3>{_pairs(run.get('model'))}"
        f"<h3>Options</h3>{_pairs(run.get('options'))}</details></section>"
    )


def _record_metrics(runs: list[dict], outputs: list[dict], shown: set[str]) -> list[dict]:
    """Per technique, the mean of the metric numbers its files carry (each result once),
    except those `shown` elsewhere."""
    groups: dict[tuple, dict[str, dict]] = {}
    for record in outputs:
        names = [k for k, v in record.items() if k.endswith(METRIC_SUFFIXES)
                 and k not in shown and isinstance(v, int | float)]
        if names:
            technique = (runs[record["run"]].get("command"), record.get("method"))
            identity = repr(sorted((k, repr(v)) for k, v in record.items()
                                   if k not in ("file", "kind")))
            groups.setdefault(technique, {})[identity] = {name: record[name] for name in names}
    rows = []
    for (command, method), results in groups.items():
        row = {"command": command, **({"method": method} if method else {}),
               "results": len(results)}
        for name in dict.fromkeys(n for values in results.values() for n in values):
            numbers = [values[name] for values in results.values() if name in values]
            row[f"mean {name}"] = sum(numbers) / len(numbers)
        rows.append(row)
    return rows


def _ranking_tables(runs: list[dict], ranking: list[dict]) -> list[str]:
    """The faithfulness ranking of the methods, one table per setup of runs (their folders
    named when there are several)."""
    setups: dict[tuple, list[dict]] = {}
    for row in ranking:
        setups.setdefault(tuple(row.get("runs") or ()), []).append(row)
    parts = []
    for numbers, rows in setups.items():
        folders = ", ".join(str(runs[number].get("folder")) for number in numbers)
        where = f" · {folders}" if len(setups) > 1 else ""
        head = "".join(f"<th>{_text(heading)}</th>" for heading in RANKING_COLUMNS)
        body = "".join(
            "<tr>" + "".join(
                f"<td class='{'' if field == 'method' else 'number'}'>"
                f"{_text(form.format(row.get(field)))}</td>"
                for field, form in RANKING_COLUMNS.values()
            ) + "</tr>"
            for row in rows
        )
        parts.append(f"<h3>Faithfulness ranking (mean over heatmaps){_text(where)}</h3>"
                     f"<table class='ranking'><tr>{head}</tr>{body}</table>")
    return parts


def _metrics_section(runs: list[dict], outputs: list[dict], metrics: dict) -> str:
    ranking = metrics.get("faithfulness") or []
    parts = _ranking_tables(runs, ranking)
    means = _record_metrics(runs, outputs, {"deletion_auc", "insertion_auc"} if ranking else set())
    parts += [f"<h3>Means over results</h3>{_table(means)}"] if means else []
    for run in runs:
        for name, table in (run.get("metrics") or {}).items():
            if name == "faithfulness":  # ranked over all runs of its setup, above
                continue
            if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
                body = _table(table)
            elif isinstance(table, dict):
                body = _pairs(table)
            else:
                body = f"<p>{_text(_value(table))}</p>"
            parts.append(f"<h3>{_text(run.get('command'))} · {_text(name)}</h3>{body}")
    return f"<section><h2>Metrics</h2>{''.join(parts)}</section>" if parts else ""


def _gates_banner(runs: list[dict]) -> str:
    """Passed or failed, over the gates of every run (`cam --fail-under ...`), failures listed."""
    gates = [row for run in runs for row in (run.get("metrics") or {}).get("gates") or []
             if isinstance(row, dict)]
    if not gates:
        return ""
    failed = [row for row in gates if not row.get("passed")]
    if not failed:
        return (f"<section class='gates passed'><strong>All {len(gates)} gates passed</strong>"
                "</section>")
    items = "".join(
        f"<li>{_text(row.get('metric'))} of {_text(row.get('method'))}: "
        f"{_text(_value(row.get('value')))} over {_text(row.get('maps'))} heatmaps, "
        f"needs {_text(row.get('rule'))}</li>"
        for row in failed
    )
    return (f"<section class='gates failed'><strong>{len(failed)} of {len(gates)} gates failed"
            f"</strong><ul>{items}</ul></section>")


def _failures_section(failures: list[dict]) -> str:
    if not failures:
        return ""
    rows = "".join(
        f"<tr><td>{_text(f.get('input'))}</td><td class='failure'>{_text(f.get('error'))}</td></tr>"
        for f in failures
    )
    return f"<section><h2>Failed inputs ({len(failures)})</h2><table>{rows}</table></section>"


def _caption(record: dict) -> str:
    shown = [_value(record[name]) for name in CAPTION_FIELDS if _is_scalar(record.get(name))]
    label = record.get("label", record.get("class"))
    if _is_scalar(label):
        shown.append(" ".join(part for part in (str(label), score_text(record)) if part))
    return " · ".join(shown) or posixpath.basename(record["file"])


def _figure(record: dict, command: str) -> str:
    source = quote(record["file"])
    caption = _caption(record)
    details = "\n".join(
        f"{key}: {_value(value)}" for key, value in record.items()
        if key not in ("run",) and (_is_scalar(value) or isinstance(value, list) and len(value) < 9)
    )
    if not record["file"].lower().endswith(PICTURE_SUFFIXES):
        return (f"<figure><a href='{source}' download>{_text(posixpath.basename(record['file']))}"
                f"</a><figcaption>{_text(caption)}</figcaption></figure>")
    return (
        f"<figure><a class='thumb' href='{source}' data-caption='{_text(f'{command} · {caption}')}'"
        f" title='{_text(details)}'><img src='{source}' alt='{_text(caption)}' loading='lazy'"
        f" decoding='async'></a><figcaption>{_text(caption)}</figcaption></figure>"
    )


def _examples_section(rows: list[dict]) -> str:
    """Each filter's dataset examples over all runs of a setup (merged shards), best first."""
    if not rows:
        return ""
    parts = "".join(
        f"<h3>{_text(row['layer'])} · filter {_text(row['filter'])}</h3><div class='techniques'>"
        + "".join(_figure(record, "maximize") for record in row["examples"]) + "</div>"
        for row in rows
    )
    return f"<section><h2>Dataset examples (over all runs)</h2>{parts}</section>"


def _predictions(records: list[dict]) -> str:
    seen: dict[str, str] = {}
    for record in records:
        label = next((record[f] for f in PREDICTION_FIELDS if _is_scalar(record.get(f))), None)
        if label is not None and str(label) not in seen:
            seen[str(label)] = f" {score_text(record)}".rstrip()
    return "".join(f"<span class='pill'>{_text(label + score)}</span>"
                   for label, score in list(seen.items())[:4])


def _image_article(name: str, records: list[dict], runs: list[dict]) -> str:
    techniques: dict[str, list[dict]] = {}
    for record in records:
        command = runs[record["run"]].get("command") or "?"
        method = record.get("method")
        techniques.setdefault(f"{command} {method}" if _is_scalar(method) else command,
                              []).append(record)
    groups = "".join(
        f"<div><h3>{_text(technique)}</h3><div class='gallery'>"
        + "".join(_figure(record, technique) for record in group) + "</div></div>"
        for technique, group in techniques.items()
    )
    title = posixpath.basename(name.replace("\\", "/")) if name != OTHER else OTHER
    path = "" if name == OTHER else f"<span class='path'>{_text(name)}</span>"
    return (f"<article data-name='{_text(name.lower())}'><h2>{_text(title)}{path}"
            f"{_predictions(records)}</h2><div class='techniques'>{groups}</div></article>")


def render_report(manifest: dict) -> str:
    """The HTML page of a manifest in merged form (see io.manifests.merge_manifests)."""
    runs, outputs = manifest["runs"], manifest["outputs"]
    by_image: dict[str, list[dict]] = {item["input"]: [] for item in manifest.get("inputs", [])}
    for record in outputs:
        source = record.get("input")
        by_image.setdefault(source if isinstance(source, str) else OTHER, []).append(record)
    articles = "".join(
        _image_article(name, records, runs) for name, records in by_image.items() if records
    )
    commands = ", ".join(dict.fromkeys(str(run.get("command")) for run in runs))
    images = sum(1 for name, records in by_image.items() if records and name != OTHER)
    failures = manifest.get("failures", [])
    summary = (f"{images} images · {len(outputs)} files · {len(failures)} failed · "
               f"{len(runs)} run{'s' if len(runs) != 1 else ''} · cnnviz {manifest.get('version')}"
               f" · {manifest.get('created')}")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>cnnviz {_text(commands)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>cnnviz {_text(commands)}</h1><p>{_text(summary)}</p></header><main>"
        + _gates_banner(runs)
        + "".join(_run_section(number, run) for number, run in enumerate(runs))
        + _metrics_section(runs, outputs, manifest.get("metrics") or {})
        + _examples_section((manifest.get("metrics") or {}).get("examples") or [])
        + _failures_section(failures)
        + "<p><input id='filter' type='search' placeholder='Filter images by path'></p>"
        + articles
        + "</main><dialog id='viewer'><img alt=''><p></p></dialog>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
