"""report.html: written by the evaluation commands, self-contained (embedded PNGs, no scripts, nothing
external), complete for runs without ground truth, timings or panels, and drawn by a real browser.

The browser check renders the page with headless Chromium and finds every embedded PNG, pixel for pixel,
in the screenshot: an image that failed to load shows as an empty box with a broken-image icon, which never
matches. A copy of the page with one image's data replaced by junk is the control that the check can fail. The
test skips where Chromium is absent, except where DCROS_REQUIRE_BROWSER=1 (.ci/run sets it once it has
installed Chromium): there a skip would hide that the page was never drawn, so it fails instead."""
import base64
from html.parser import HTMLParser
import io
import json
import os
from pathlib import Path
import re
import shutil
import subprocess

import numpy as np
from PIL import Image
import pytest

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.cli import main as dcros
from depth_completion_ros.evaluation.html_report import describe_engine, write_html_report
from depth_completion_ros.evaluation.report import write_report
from depth_completion_ros.evaluation.scoring import FrameScorer

REQUIRE_BROWSER = os.environ.get("DCROS_REQUIRE_BROWSER", "") not in ("", "0")
PNG_URI = "data:image/png;base64,"


@pytest.fixture(scope="module")
def kitti_report(synthetic_kitti, tmp_path_factory):
    out = tmp_path_factory.mktemp("html_report") / "eval"
    assert dcros(["eval-kitti", "--data", str(synthetic_kitti), "--split", "val_selection_cropped",
                  "--model", "baseline:nearest", "--limit", "2", "--out", str(out)]) == 0
    return out


class _Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def _embedded_pngs(html: str) -> list[tuple[dict, bytes]]:
    """(attributes, PNG bytes) of every <img>; fails on any image that is not an embedded PNG."""
    images = []
    for tag, attrs in _tags(html):
        if tag == "img":
            src = attrs.get("src", "")
            assert src.startswith(PNG_URI), f"image {attrs.get('alt')!r} is not an embedded PNG: {src[:60]!r}"
            images.append((attrs, base64.b64decode(src[len(PNG_URI):], validate=True)))
    return images


def _assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r"(https?|ftp|file):", html, re.IGNORECASE), "the page names an external address"
    assert "url(" not in html and "@import" not in html, "the style loads something"
    for tag, attrs in _tags(html):
        assert tag not in ("link", "iframe", "object", "embed", "video", "audio", "source"), tag
        for name in ("href", "srcset", "action", "data"):
            assert name not in attrs, f"<{tag} {name}=...>"
        if "src" in attrs:
            assert attrs["src"].startswith(PNG_URI), f"<{tag} src={attrs['src'][:60]!r}>"


def test_eval_kitti_writes_a_self_contained_page_with_every_figure(kitti_report):
    html = (kitti_report / "report.html").read_text(encoding="utf-8")
    summary = json.loads((kitti_report / "metrics.json").read_text())
    _assert_self_contained(html)
    # The two plots and both panels, each exactly the PNG file of the report folder and a PNG that PIL reads.
    files = {p.read_bytes(): p.name for p in [kitti_report / "error_by_distance.png", kitti_report / "latency.png",
                                              *sorted((kitti_report / "panels").glob("*.png"))]}
    images = _embedded_pngs(html)
    assert sorted(files.get(data, "?") for _, data in images) == sorted(files.values())
    for attrs, data in images:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "PNG" and image.size == (int(attrs["width"]), int(attrs["height"]))
    # Key figures, as the page formats them.
    latency = summary["latency_ms"]["total"]
    for text in ("KITTI val_selection_cropped", f"{summary['rmse_mm']:,.2f}", f"{summary['mae_mm']:,.2f}",
                 f"{summary['irmse_1km']:,.3f}", f"{summary['imae_1km']:,.3f}", f"{summary['rel']:.4f}",
                 f"{summary['delta1']:.4f}", f"{summary['delta3']:.4f}", f"{summary['pixels']:,}",
                 f"{latency['p50']:,.2f}", f"{latency['p99']:,.2f}", "2000_01_01_drive_0002_sync/image_02"):
        assert text in html, text
    bins = [row for row in summary["error_by_distance"] if row["pixels"]]
    assert bins and all(f"{row['rmse_mm']:,.1f}" in html for row in bins)
    assert re.search(r"<td>processed</td><td class=\"num\">2</td>", html)
    assert 'id="self-check"' not in html  # no self-check in this summary: no section


@pytest.mark.parametrize("timed", [True, False], ids=["timing-only", "untimed"])
def test_a_run_without_ground_truth_panels_or_timings_still_renders(tmp_path, timed):
    scorer = FrameScorer(tmp_path / "report")
    dense = np.full((8, 12), 5.0, np.float32)
    for index in range(3):
        timings = {"conversion": 1.0, "projection": 2.0, "inference": 3.0 + index, "postprocess": 1.0,
                   "total": 7.0 + index} if timed else None
        scorer.score(dense, 1000 * index, f"frame{index}", gt=None, timings_ms=timings)
    scorer.drop("no_points", count=2)
    scorer.finish({"mode": "pipeline", "bag": "/data/drive <7>"})
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "no error figures" in html and "no error by distance" in html and "No panel was drawn" in html
    assert "drive &lt;7&gt;" in html and "<7>" not in html
    assert re.search(r"<td>dropped: no_points</td><td class=\"num\">2</td>", html)
    images = _embedded_pngs(html)
    if timed:
        assert [attrs["alt"] for attrs, _ in images] == ["Pipeline latency per frame and median time per stage"]
        assert "9.00" in html  # the total's max
    else:
        assert images == [] and "were not timed" in html


def test_an_empty_summary_renders(tmp_path):
    paths = write_report(tmp_path, {}, [])
    html = paths["html"].read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "<h1>Depth completion: evaluation</h1>" in html and _embedded_pngs(html) == []


def test_self_check_engine_and_text_are_shown_and_escaped(tmp_path):
    # A self-check as the scorer summarises it, with its plot in the folder, and one more self_check_* key.
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "self_check_vs_gt.png")
    summary = {"split": "val", "data": "/k", "engine": describe_engine(BaselineEngine("nearest")),
               "frames_processed": 1, "frames_scored": 0, "drops": {"<script>alert(1)</script>": 1},
               "self_check": {"fraction": 0.05, "held_out_pixels": 1608, "mean_rmse_mm": 2559.87,
                              "bands": {"0-10 m": {"pixels": 453, "rmse_mm": 392.91, "mae_mm": None}},
                              "correlation_with_gt_rmse": {"frames": 2, "pearson": None, "spearman": None},
                              "plot": str(tmp_path / "self_check_vs_gt.png")},
               "self_check_reference": "devkit & numpy"}
    html = write_html_report(tmp_path, summary).read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert "<title>Depth completion: KITTI val — baseline:nearest (numpy, cpu, fp32)</title>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    section = html[html.index('<section id="self-check">'):]
    section = section[:section.index("</section>")]
    for text in ("held_out_pixels", "1,608", "2,559.9", "0-10 m", "392.9", "pearson", "devkit &amp; numpy"):
        assert text in section, text
    assert str(tmp_path) not in section  # the plot's path: the plot itself is on the page
    [(attrs, data)] = _embedded_pngs(section)
    assert data == (tmp_path / "self_check_vs_gt.png").read_bytes() and attrs["alt"] == "self_check_vs_gt.png"


# ------------------------------------------------------------------------------------------ in a browser

@pytest.fixture(scope="module")
def browser() -> str:
    """The Chromium executable (listed before kitti_report: a skip then comes before the evaluation runs)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "no Chromium on PATH (Debian: apt-get install chromium) to render report.html"
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason}, although DCROS_REQUIRE_BROWSER is set")
    pytest.skip(reason)


def _screenshot(browser: str, page: Path, out: Path, height: int) -> np.ndarray:
    # Device scale 1 and sRGB output: Chromium then paints a PNG shown at its own size with its own pixels.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", "--force-color-profile=srgb", "--virtual-time-budget=5000",
               f"--user-data-dir={out.parent / (out.stem + '_profile')}", f"--window-size=1280,{height}",
               f"--screenshot={out}", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=180)
    assert result.returncode == 0 and out.is_file(), f"{command}\n{result.stderr[-3000:]}"
    with Image.open(out) as shot:
        return np.asarray(shot.convert("RGB"))


def _find(shot: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the top-left corner where `image` appears unchanged in `shot`, else None."""
    height, width = image.shape[:2]
    # Searched for first: the row with the most colour changes, the least likely to match elsewhere.
    row = int(np.argmax((np.diff(image.astype(np.int16), axis=1) != 0).any(axis=2).sum(axis=1)))
    needle, haystack, stride = image[row].tobytes(), shot.tobytes(), shot.shape[1] * 3
    offset = haystack.find(needle)
    while offset >= 0:
        y, x = divmod(offset, stride)
        if x % 3 == 0 and x // 3 + width <= shot.shape[1] and row <= y and y - row + height <= shot.shape[0]:
            x, y = x // 3, y - row
            if np.array_equal(shot[y:y + height, x:x + width], image):
                return x, y
        offset = haystack.find(needle, offset + 1)
    return None


def _rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        # Composited on white, as the page's figures are (matplotlib's PNGs are opaque anyway).
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(flat, rgba).convert("RGB"))


def test_a_browser_draws_every_image_of_the_page(browser, kitti_report, tmp_path):
    page = kitti_report / "report.html"
    html = page.read_text(encoding="utf-8")
    images = [(attrs["alt"], _rgb(data)) for attrs, data in _embedded_pngs(html)]
    assert len(images) == 4
    height = sum(image.shape[0] for _, image in images) + 3000  # the whole page in one window
    shot = _screenshot(browser, page, tmp_path / "report.png", height)
    assert (shot[-50:] == shot[-1, 0]).all(), "the page is longer than the window: raise its height"
    found = [_find(shot, image) for _, image in images]
    missing = [alt for (alt, _), where in zip(images, found) if where is None]
    assert not missing, f"not drawn pixel for pixel (broken, or scaled by the layout): {missing}"
    assert [y for _, y in found] == sorted(y for _, y in found), "images out of document order"
    # The control: with one panel's data replaced by junk (a broken image), that one is reported, the others found.
    broken_alt, broken = images[2]
    for attrs, data in _embedded_pngs(html):
        if attrs["alt"] == broken_alt:
            html = html.replace(base64.b64encode(data).decode(), base64.b64encode(b"not a PNG").decode())
    (tmp_path / "broken.html").write_text(html, encoding="utf-8")
    shot = _screenshot(browser, tmp_path / "broken.html", tmp_path / "broken.png", height)
    assert [_find(shot, image) is not None for _, image in images] == [True, True, False, True]
