"""report.html: the evaluation report as one self-contained page for people. Its plots and panels are
embedded as base64 PNG data URIs and its style is inline, so the file can be mailed or attached on its own;
it has no scripts and loads nothing (its Content-Security-Policy allows data: images and inline style only).

The page is written from the summary that goes into metrics.json and from the PNGs already in the report
folder; any part of it that a run does not have (ground truth, timings, panels, a self-check) is left out
with a line saying why, so a timing-only run or a recording without images still gives a complete page."""
from __future__ import annotations

import base64
import math
import struct
from datetime import datetime
from html import escape
from pathlib import Path

REPORT_NAME = "report.html"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Keys of the summary that have a section of their own; every other scalar goes into "Run details".
_METRIC_KEYS = ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "rel", "delta1", "delta2", "delta3", "images",
                "pixels", "missing", "coverage", "images_skipped", "reduction")
_FRAME_KEYS = ("frames_processed", "frames_scored", "frames_without_gt", "frames_dropped", "drops", "wall_s",
               "fps", "frames_recorded", "frames_ground_truth", "frames_missing_prediction")
_SECTION_KEYS = {"latency_ms", "error_by_distance", "report", "engine", "model"}

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2330; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
       Roboto, "DejaVu Sans", sans-serif; }
/* Wide enough that the plots (<= 1000 px) and panels show at their own size, pixel for pixel. */
main { max-width: 1136px; margin: 0 auto; padding: 24px; }
header { border-bottom: 3px solid #2c5aa0; padding-bottom: 12px; margin-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 12px; color: #2c5aa0; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.subtitle { margin: 0; font-size: 17px; color: #3b4456; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0 0;
          font-size: 14px; }
dl.meta dt { color: #5d6677; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 16px 20px;
          margin: 16px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { flex: 1 1 140px; background: #fff; border: 1px solid #dde1e8; border-left: 4px solid #2c5aa0;
        border-radius: 6px; padding: 10px 14px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; }
.card .unit { font-size: 14px; font-weight: 400; color: #5d6677; }
.card .label { font-size: 13px; color: #5d6677; }
table { border-collapse: collapse; margin: 0 0 12px; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e6e9ee; text-align: left; vertical-align: top; }
th { background: #eef1f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.kv > tbody > tr > th { background: none; font-weight: 500; color: #3b4456; }
tr.sub td:first-child { padding-left: 28px; color: #5d6677; }
.tables { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
.note { color: #5d6677; font-style: italic; margin: 4px 0 12px; }
figure { margin: 12px 0 0; }
#panels figure + figure { border-top: 1px solid #dde1e8; padding-top: 12px; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #5d6677; margin-top: 4px; }
details summary { cursor: pointer; font-weight: 600; color: #2c5aa0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
footer { font-size: 13px; color: #5d6677; margin: 8px 0 24px; }
"""


def describe_engine(engine) -> dict:
    """What the report shows of the engine (an `inference.Engine` or a `baselines.BaselineEngine`): put it
    into the summary under "engine" so that the page's title names the model."""
    described = {"architecture": getattr(engine, "architecture", type(engine).__name__)}
    for name in ("backend", "device", "precision", "refinement"):
        value = getattr(engine, name, None)
        if value is not None:
            described[name] = str(value)
    return described


def write_html_report(out_dir: Path, summary: dict, rows: list[dict] | None = None,
                      written_at: datetime | None = None) -> Path:
    """Write OUT_DIR/report.html from the summary and the PNGs in OUT_DIR; returns its path."""
    out_dir = Path(out_dir)
    rows = rows or []
    written_at = written_at or datetime.now().astimezone()
    title = _title(summary)
    body = [_header(summary, title, written_at), _cards(summary), _metrics_section(summary),
            _distance_section(summary, out_dir), _latency_section(summary, out_dir),
            _panels_section(summary, rows, out_dir), _self_check_section(summary, out_dir),
            _details_section(summary), _footer(out_dir)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            # The page must stand alone: the browser itself refuses anything but embedded images and style.
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(part for part in body if part) + "\n</main>\n</body>\n</html>\n")
    path = out_dir / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ parts

def _evaluated(summary: dict) -> str:
    """One line naming the data the run scored."""
    if summary.get("split"):
        return f"KITTI {summary['split']} split of {summary.get('data', '?')}"
    if summary.get("mode") == "recorded":
        return (f"recorded depth {summary.get('recorded_topic', '?')} of {summary.get('recorded_bag', '?')}, "
                f"against the ground truth of {summary.get('bag', '?')}")
    if summary.get("bag"):
        return f"rosbag {summary['bag']}, replayed through the pipeline"
    return "evaluation"


def _model(summary: dict) -> str | None:
    engine = summary.get("engine", summary.get("model"))
    if isinstance(engine, dict):
        name = engine.get("architecture") or engine.get("name") or "?"
        extra = ", ".join(str(engine[k]) for k in ("backend", "device", "precision") if engine.get(k))
        return f"{name} ({extra})" if extra else str(name)
    if engine:
        return str(engine)
    if summary.get("mode") == "recorded":
        return "the node's own output, as recorded (no network ran here)"
    return None


def _title(summary: dict) -> str:
    if summary.get("split"):
        what = f"KITTI {summary['split']}"
    elif summary.get("bag"):
        what = Path(str(summary["bag"])).name or str(summary["bag"])
        what = f"{what} (recorded depth)" if summary.get("mode") == "recorded" else what
    else:
        what = "evaluation"
    model = _model(summary)
    return f"Depth completion: {what}" + (f" — {model}" if model and summary.get("mode") != "recorded" else "")


def _header(summary: dict, title: str, written_at: datetime) -> str:
    meta = [("Model", _model(summary) or "not named in the summary"),
            ("Written", written_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip())]
    if summary.get("wall_s") is not None:
        meta.append(("Run time", f"{_fmt(summary['wall_s'], 1)} s"
                     + (f" ({_fmt(summary['fps'], 2)} frames/s end to end)" if summary.get("fps") else "")))
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in meta)
    return (f"<header>\n<h1>{escape(title)}</h1>\n<p class=\"subtitle\">{escape(_evaluated(summary))}</p>\n"
            f"<dl class=\"meta\">{items}</dl>\n</header>")


def _scored(summary: dict) -> bool:
    return bool(summary.get("frames_scored")) and _finite(summary.get("rmse_mm"))


def _cards(summary: dict) -> str:
    cards = []  # (label, value, unit)
    if _scored(summary):
        cards += [("RMSE", _fmt(summary["rmse_mm"], 1), "mm"), ("MAE", _fmt(summary.get("mae_mm"), 1), "mm"),
                  ("iRMSE", _fmt(summary.get("irmse_1km"), 3), "1/km"),
                  ("δ < 1.25", _fmt(summary.get("delta1"), 4), "")]
    if summary.get("frames_processed") is not None:
        cards.append(("frames scored / processed",
                      f"{_fmt(summary.get('frames_scored', 0))} / {_fmt(summary['frames_processed'])}", ""))
    total = (summary.get("latency_ms") or {}).get("total") or {}
    if total.get("p50") is not None:
        cards.append(("latency p50", _fmt(total["p50"], 1), "ms"))
    if not cards:
        return ""
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><div class=\"value\">{escape(value)}"
        + (f" <span class=\"unit\">{escape(unit)}</span>" if unit else "")
        + f"</div><div class=\"label\">{escape(label)}</div></div>" for label, value, unit in cards) + "</div>"


def _metrics_section(summary: dict) -> str:
    parts = ["<section id=\"metrics\">", "<h2>Metrics</h2>", "<div class=\"tables\">"]
    if _scored(summary):
        metric_rows = [("RMSE", summary.get("rmse_mm"), 2, "mm"), ("MAE", summary.get("mae_mm"), 2, "mm"),
                       ("iRMSE", summary.get("irmse_1km"), 3, "1/km"), ("iMAE", summary.get("imae_1km"), 3, "1/km"),
                       ("REL", summary.get("rel"), 4, ""), ("δ < 1.25", summary.get("delta1"), 4, ""),
                       ("δ < 1.25²", summary.get("delta2"), 4, ""), ("δ < 1.25³", summary.get("delta3"), 4, "")]
        body = "".join(f"<tr><td>{escape(name)}</td><td class=\"num\">{escape(_fmt(value, digits))}</td>"
                       f"<td>{escape(unit)}</td></tr>" for name, value, digits, unit in metric_rows)
        scored = [("images scored", summary.get("images")), ("averaged", summary.get("reduction")),
                  ("pixels scored", summary.get("pixels")), ("pixels without prediction", summary.get("missing")),
                  ("coverage", summary.get("coverage")), ("images skipped (no scored pixel)",
                                                          summary.get("images_skipped"))]
        body += "".join(f"<tr class=\"sub\"><td>{escape(name)}</td><td class=\"num\">{escape(_fmt(value, 4))}</td>"
                        "<td></td></tr>" for name, value in scored if value is not None)
        parts.append(f"<table><thead><tr><th>metric</th><th class=\"num\">value</th><th>unit</th></tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    frames = [(name, summary.get(key), "") for name, key in (
        ("processed", "frames_processed"), ("scored", "frames_scored"),
        ("without ground truth", "frames_without_gt"), ("dropped", "frames_dropped"))]
    frames += [(f"dropped: {reason}", count, "sub") for reason, count in sorted((summary.get("drops") or {}).items())]
    frames += [(name, summary.get(key), "") for name, key in (
        ("recorded depth images", "frames_recorded"), ("ground-truth frames", "frames_ground_truth"),
        ("ground-truth frames without recorded depth", "frames_missing_prediction"))]
    frame_rows = "".join(f"<tr class=\"{css}\"><td>{escape(name)}</td><td class=\"num\">{escape(_fmt(value))}</td></tr>"
                         for name, value, css in frames if value is not None)
    if frame_rows:
        parts.append(f"<table><thead><tr><th>frames</th><th class=\"num\">count</th></tr></thead>"
                     f"<tbody>{frame_rows}</tbody></table>")
    parts.append("</div>")
    if not _scored(summary):
        parts.append("<p class=\"note\">No frame was scored: the run had no ground truth (timing only), so there "
                     "are no error figures.</p>")
    if summary.get("first_error"):
        parts.append(f"<p class=\"note\">First error: {escape(str(summary['first_error']))}</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _distance_section(summary: dict, out_dir: Path) -> str:
    table = [r for r in (summary.get("error_by_distance") or []) if r.get("pixels")]
    parts = ["<section id=\"error-by-distance\">", "<h2>Error by distance</h2>"]
    if not table:
        parts += ["<p class=\"note\">No ground-truth pixel was scored, so there is no error by distance.</p>",
                  "</section>"]
        return "\n".join(parts)
    body = "".join(
        f"<tr><td>{escape(_bin_label(r))}</td><td class=\"num\">{escape(_fmt(r.get('pixels')))}</td>"
        f"<td class=\"num\">{escape(_fmt(r.get('rmse_mm'), 1))}</td>"
        f"<td class=\"num\">{escape(_fmt(r.get('mae_mm'), 1))}</td></tr>" for r in table)
    parts.append("<table><thead><tr><th>ground-truth distance (m)</th><th class=\"num\">pixels</th>"
                 "<th class=\"num\">RMSE (mm)</th><th class=\"num\">MAE (mm)</th></tr></thead>"
                 f"<tbody>{body}</tbody></table>")
    parts.append(_figure(out_dir / "error_by_distance.png", "RMSE and MAE by ground-truth distance"))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _latency_section(summary: dict, out_dir: Path) -> str:
    stages = [(stage, values) for stage, values in (summary.get("latency_ms") or {}).items() if values]
    parts = ["<section id=\"latency\">", "<h2>Latency</h2>"]
    if not stages:
        parts += ["<p class=\"note\">The frames were not timed (a recorded depth is scored as it was recorded), "
                  "so there is no latency.</p>", "</section>"]
        return "\n".join(parts)
    columns = ("mean", "p50", "p90", "p99", "max")
    head = "".join(f"<th class=\"num\">{c}</th>" for c in columns)
    body = "".join(f"<tr><td>{escape(stage)}</td>"
                   + "".join(f"<td class=\"num\">{escape(_fmt(values.get(c), 2))}</td>" for c in columns) + "</tr>"
                   for stage, values in stages)
    parts.append(f"<table><thead><tr><th>stage (ms per frame)</th>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append(_figure(out_dir / "latency.png", "Pipeline latency per frame and median time per stage"))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _panels_section(summary: dict, rows: list[dict], out_dir: Path) -> str:
    listed = (summary.get("report") or {}).get("panels")
    if listed is None:
        paths = sorted((out_dir / "panels").glob("*.png"))
    else:
        # Paths as the scorer wrote them; a report folder that has since moved still has them by name.
        paths = [Path(p) if Path(p).is_file() else out_dir / "panels" / Path(p).name for p in listed]
    parts = ["<section id=\"panels\">", "<h2>Panels</h2>"]
    if not paths:
        parts += ["<p class=\"note\">No panel was drawn (no frame with an image was selected).</p>", "</section>"]
        return "\n".join(parts)
    parts.append("<p class=\"note\">Top to bottom: RGB | sparse input | prediction | ground truth | "
                 "|prediction − ground truth| (rows the frame does not have are left out).</p>")
    by_frame = {r.get("frame"): r for r in rows}
    for path in paths:
        row = by_frame.get(_frame_index(path), {})
        caption = f"frame {row['frame']}: {row.get('name', '')}" if row else path.name
        if _finite(row.get("rmse_mm")):
            caption += f" — RMSE {_fmt(row['rmse_mm'], 1)} mm, MAE {_fmt(row.get('mae_mm'), 1)} mm"
        parts.append(_figure(path, caption))
    parts.append("</section>")
    return "\n".join(parts)


def _self_check_section(summary: dict, out_dir: Path) -> str:
    keys = [k for k in summary if k.startswith("self_check")]
    images = sorted(out_dir.glob("self_check*.png"))
    if not keys and not images:
        return ""
    parts = ["<section id=\"self-check\">", "<h2>Self-check</h2>"]
    figures = {}
    for key in keys:  # the entries of a "self_check" record directly, other self_check_* keys beside them
        value = summary[key]
        figures.update(value if key == "self_check" and isinstance(value, dict) else {key: value})
    # A path to a plot shown below says nothing more on the page.
    names = {path.name for path in images}
    figures = {k: v for k, v in figures.items() if not (isinstance(v, str) and Path(v).name in names)}
    if figures:
        parts.append(_value_html(figures))
    parts += [_figure(path, path.name) for path in images]
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _details_section(summary: dict) -> str:
    shown = set(_METRIC_KEYS) | set(_FRAME_KEYS) | _SECTION_KEYS
    rest = {k: v for k, v in summary.items() if k not in shown and not k.startswith("self_check")}
    if not rest:
        return ""
    return (f"<section id=\"details\">\n<details open><summary>Run details</summary>\n{_value_html(rest)}\n</details>\n"
            "</section>")


def _footer(out_dir: Path) -> str:
    return (f"<footer>Report folder: <code>{escape(str(out_dir))}</code> — the figures as data in "
            "<code>metrics.json</code> and per frame in <code>frames.csv</code>.</footer>")


# ------------------------------------------------------------------------------------------------ helpers

def png_data_uri(path: Path) -> tuple[str, int, int] | None:
    """(data URI, width, height) of a PNG file; None where the file is missing or not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), width, height


def _figure(path: Path, caption: str) -> str:
    embedded = png_data_uri(path)
    if embedded is None:
        return f"<p class=\"note\">{escape(Path(path).name)} is missing or not a PNG.</p>"
    uri, width, height = embedded
    # width/height: the page lays out before the images decode and shows them 1:1 where the page is wide enough.
    return (f"<figure><img src=\"{uri}\" width=\"{width}\" height=\"{height}\" alt=\"{escape(caption)}\">"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _frame_index(path: Path) -> int | None:
    stem = Path(path).stem
    digits = stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else None


def _bin_label(row: dict) -> str:
    if row.get("to_m") is None:
        return f"> {_fmt(row.get('from_m'))}"
    return f"{_fmt(row.get('from_m'))} – {_fmt(row.get('to_m'))}"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value, digits: int | None = None) -> str:
    """A value as text: "–" for none or NaN, thousands separated integers, floats to `digits` decimals
    (else by their size)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return f"{int(value):,}"
    if isinstance(value, float) or hasattr(value, "dtype"):
        value = float(value)
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if digits is None:  # millimetres to 0.1, small ratios to 4 significant digits
            digits = 1 if abs(value) >= 100 else 3 if abs(value) >= 1 else None
            return f"{value:.4g}" if digits is None else f"{value:,.{digits}f}"
        return f"{value:,.{digits}f}" if abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def _value_html(value) -> str:
    """Any JSON-like value as HTML: dicts as key/value tables, dicts of flat dicts and lists of dicts as
    tables with a row each, the rest as text."""
    if isinstance(value, dict):
        if not value:
            return "–"
        if all(isinstance(v, dict) and v and not any(isinstance(x, (dict, list)) for x in v.values())
               for v in value.values()):  # flat records, e.g. per band: a row each
            return _records_table(list(value.values()), [str(k) for k in value])
        rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{_value_html(v)}</td></tr>" for k, v in value.items())
        return f"<table class=\"kv\"><tbody>{rows}</tbody></table>"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            return _records_table(list(value))
        return escape(", ".join(_fmt(v) for v in value)) if value else "–"
    return escape(_fmt(value))


def _records_table(records: list[dict], names: list[str] | None = None) -> str:
    """A table of records with the union of their keys as columns, and `names` as a first column if given."""
    columns = list(dict.fromkeys(k for record in records for k in record))
    numeric = {c for c in columns if all(_number(r.get(c)) for r in records if r.get(c) is not None)}
    head = ("<th></th>" if names else "") + "".join(
        f"<th class=\"num\">{escape(str(c))}</th>" if c in numeric else f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + (f"<th>{escape(names[i])}</th>" if names else "")
                   + "".join(_cell(record.get(c)) for c in columns) + "</tr>" for i, record in enumerate(records))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    return f"<td class=\"num\">{_value_html(value)}</td>" if _number(value) else f"<td>{_value_html(value)}</td>"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
