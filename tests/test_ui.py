"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against a real
`bgremover serve` with the real model. Screenshots land in test-artifacts/ for people to look at."""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from bgremover.engine.models import ModelStore

from .disk_support import CannotMount, fill, small_disk
from .family_models import build_family_model
from .serving import served, unseen

pytestmark = pytest.mark.model

CHROMIUM = os.environ.get("BGREMOVER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 120_000

# Records every browser notification the page creates (permission is granted below).
RECORD_NOTIFICATIONS = """
window.__notifications = [];
const Native = window.Notification;
class Recording extends Native {
  constructor(title, options) { super(title, options); window.__notifications.push(title); }
}
Object.defineProperty(Recording, "permission", { get: () => Native.permission });
Recording.requestPermission = (...args) => Native.requestPermission(...args);
window.Notification = Recording;
"""


SECOND_ATTEMPT_FAILED = """() =>
  fetch('/api/jobs?q=truncated.jpg&include_superseded=true')
    .then(r => r.json())
    .then(d => d.items.some(j => j.attempt === 2 && j.status === 'failed'))"""

ONLY_FAILED_IN_QUEUE = """() => {
  const cards = [...document.querySelectorAll('job-queue-modal batch-card')];
  return cards.length > 0 && cards.every(c => c.dataset.status === 'failed');
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("ui"), "--dev") as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(
        base_url=server, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    context.grant_permissions(["notifications"], origin=server)
    context.add_init_script(RECORD_NOTIFICATIONS)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/")
    tab.wait_for_selector("#connection[data-state=open]")
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@contextmanager
def opened(browser: Any, url: str) -> Iterator[Any]:
    """A tab of a fresh browser context on ``url``'s page; fails the test on any JavaScript
    error the page raised."""
    context = browser.new_context(base_url=url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/")
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def upload(page: Any, *paths: Path) -> None:
    page.set_input_files("drop-zone input[type=file]", [str(p) for p in paths])


def tile(page: Any, name: str) -> Any:
    return page.locator("li.result-tile", has_text=name).first


DROP = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name));
  const target = document.querySelector("drop-zone .drop-zone__target");
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true,
                                               cancelable: true }));
  }
}"""


SHOWN_PREVIEWS = """(name) => {
  const tile = [...document.querySelectorAll('li.result-tile')]
    .find((li) => li.textContent.includes(name));
  const images = tile ? [...tile.querySelectorAll('.result-tile__preview img')] : [];
  return images.length === 2 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


def drop(page: Any, path: Path) -> None:
    """Drag and drop a file onto the page, as a file manager would."""
    page.evaluate(DROP, [path.name, base64.b64encode(path.read_bytes()).decode()])


def test_a_bar_keeps_its_share_of_the_time_when_a_waiting_batch_starts(page: Any) -> None:
    """A batch that waited (say, for the workers' models to load) reports 0 % of its work
    done when its first jobs start, with a new ETA: its bar neither drops back nor stalls
    there, but goes on from what it showed toward 100 % at the pace of that ETA."""
    before, after, later = page.evaluate(
        """async () => {
            const { arrived, liveProgress } = await import("/static/js/store.js");
            const waiting = arrived(undefined, {
                status: "pending", counts: { total: 10 }, progress: 0,
                estimated_time_remaining: 20,
            }, performance.now() - 10000);  // 10 s of its 20 s have passed
            const before = liveProgress(waiting);
            const report = () => ({
                status: "processing", counts: { total: 10 }, progress: 0,
                estimated_time_remaining: 10,
            });
            const after = liveProgress(arrived(waiting, report()));
            // The same report, had it come 5 s ago: half of the new ETA has passed.
            const later = liveProgress(arrived(waiting, report(), performance.now() - 5000));
            return [before, after, later];
        }"""
    )
    assert before == pytest.approx(50, abs=1)
    assert after >= before
    assert later == pytest.approx(75, abs=1)


def test_heic_from_the_picker_and_avif_dropped_become_results(
    page: Any, phone_photos: dict[str, Path]
) -> None:
    images: list[str] = []
    page.on("request", lambda r: images.append(r.url) if r.resource_type == "image" else None)
    accept = page.get_attribute("drop-zone input[type=file]", "accept") or ""
    assert {".heic", ".avif"} <= set(accept.split(",")), accept
    upload(page, phone_photos["chelsea.heic"])
    page.wait_for_selector("drop-zone:not([busy]) .drop-zone__message[data-kind=success]")
    drop(page, phone_photos["chelsea.avif"])
    for name in phone_photos:
        page.wait_for_selector(f"li.result-tile[data-status=completed]:has-text('{name}')")
    # A browser cannot show a HEIC; the server-made thumbnails (before and after) it can.
    page.wait_for_function(SHOWN_PREVIEWS, arg="chelsea.heic")
    shot(page, "phone-photos")
    assert images and all("/thumbnail?" in url for url in images), images


def test_photos_go_through_stages_to_results_and_download_as_transparent_png(
    page: Any, photos: dict[str, Path]
) -> None:
    upload(page, *photos.values())
    seen_stages: set[str] = set()
    for _ in range(600):
        stage_texts = page.locator("job-card .job-card__stage").all_inner_texts()
        seen_stages |= {t.strip() for t in stage_texts if t.strip()}
        if "AI model" in seen_stages and not any(
            page.locator("li.result-tile[data-status=processing]").all()
        ):
            break
        if "AI model" in seen_stages and not (ARTIFACTS / "main-mid-batch.png").exists():
            shot(page, "main-mid-batch")
        page.wait_for_timeout(100)
    assert "AI model" in seen_stages, f"stages seen: {seen_stages}"
    if not (ARTIFACTS / "main-mid-batch.png").exists():
        shot(page, "main-mid-batch")
    for name in photos:
        page.wait_for_selector(f"li.result-tile[data-status=completed]:has-text('{name}')")
    shot(page, "main-results")
    # The store keeps what it adds (arrival times, bar floors) beside the server's objects.
    added = page.evaluate(
        """async () => {
            const { store } = await import("/static/js/store.js");
            const items = [...store.jobs.values(), ...store.batches.values(),
                ...store.sessions.values()];
            const own = (item) => Object.keys(item).filter((key) => key.startsWith("_"));
            return items.length ? items.flatMap(own) : ["no items"];
        }"""
    )
    assert added == [], added

    coffee = tile(page, "coffee.jpg")
    with page.expect_download() as download_info:
        coffee.locator("[data-action=download]").click()
    download = download_info.value
    assert download.suggested_filename == "coffee-no-bg.png"
    image = Image.open(io.BytesIO(Path(download.path()).read_bytes()))
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.getchannel("A").getextrema() == (0, 255)


def test_cancel_a_running_job(page: Any, photos: dict[str, Path], tmp_path: Path) -> None:
    portrait = tmp_path / "portrait.jpg"  # bytes the server has not run, so the model runs
    portrait.write_bytes(unseen(photos["astronaut.jpg"], "cancel a running job"))
    upload(page, portrait)
    card = page.locator("li.result-tile", has_text="portrait.jpg").first
    page.wait_for_selector("li.result-tile[data-status=processing]:has-text('portrait.jpg')")
    card.locator("[data-action=cancel]").click()
    page.wait_for_selector("li.result-tile[data-status=cancelled]:has-text('portrait.jpg')")


def test_a_corrupt_file_fails_with_a_toast_and_a_browser_notification_then_retries(
    page: Any, bad_inputs: dict[str, Path]
) -> None:
    upload(page, bad_inputs["corrupt_image_jpeg"])
    page.wait_for_selector("li.result-tile[data-status=failed]:has-text('truncated.jpg')")
    toast = page.locator(".toast[data-kind=error]").first
    toast.wait_for()
    assert "truncated.jpg" in toast.inner_text()
    page.wait_for_function("window.__notifications.length > 0")
    titles = page.evaluate("window.__notifications")
    assert any("truncated.jpg" in t or "Batch finished" in t for t in titles), titles

    failed = page.locator("li.result-tile[data-status=failed]", has_text="truncated.jpg").first
    failed.locator("[data-action=retry]").click()
    # The retry is a new attempt of the same file; it fails again, as a corrupt file must.
    page.wait_for_function(SECOND_ATTEMPT_FAILED)


def test_queue_modal_tabs_filters_and_keyboard_shortcuts(
    page: Any, photos: dict[str, Path], bad_inputs: dict[str, Path]
) -> None:
    # Two batches of its own: one that completes, one whose only file fails.
    upload(page, photos["chelsea.jpg"])
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('chelsea.jpg')")
    upload(page, bad_inputs["corrupt_image_png"])
    page.wait_for_selector("li.result-tile[data-status=failed]:has-text('truncated.png')")

    page.keyboard.press("j")
    modal = page.locator("job-queue-modal dialog")
    modal.wait_for(state="visible")
    page.wait_for_selector("job-queue-modal batch-card")
    shot(page, "queue-modal")
    modal.locator("select[name=status]").select_option("failed")
    page.wait_for_function(ONLY_FAILED_IN_QUEUE)
    page.click("#queue-tab-sessions")
    assert page.get_attribute("#queue-tab-sessions", "aria-selected") == "true"
    page.wait_for_selector("job-queue-modal session-view batch-card")
    shot(page, "sessions-view")
    page.keyboard.press("Escape")
    modal.wait_for(state="hidden")

    page.keyboard.press("n")
    notifications = page.locator("notification-center dialog")
    notifications.wait_for(state="visible")
    assert page.locator("#unread-count").inner_text() == ""
    page.keyboard.press("Escape")
    notifications.wait_for(state="hidden")

    page.keyboard.press("?")
    help_dialog = page.locator("help-dialog dialog")
    help_dialog.wait_for(state="visible")
    assert "Ctrl" in help_dialog.inner_text()
    assert "bgremover serve --dev" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")


def test_history_opens_with_ctrl_h_and_searches_by_file_name(
    page: Any, photos: dict[str, Path]
) -> None:
    upload(page, photos["coffee.jpg"], photos["chelsea.jpg"])
    for name in ("coffee.jpg", "chelsea.jpg"):
        page.wait_for_selector(f"li.result-tile[data-status=completed]:has-text('{name}')")
    page.keyboard.press("Control+h")
    history = page.locator("history-view dialog")
    history.wait_for(state="visible")
    page.wait_for_selector("history-view .history__item")
    history.locator("input[name=q]").fill("chel")
    page.wait_for_function(
        """() => { const names = [...document.querySelectorAll('history-view .history__name')]
                     .map(n => n.textContent);
                   return names.length > 0 && names.every(n => n.includes('chel')); }"""
    )
    shot(page, "history")


TWO_COFFEE_RESULTS = """() => [...document.querySelectorAll(
  'li.result-tile[data-status=completed]')].filter(t => t.textContent.includes('coffee.jpg'))
  .length === 2"""

NEWEST_COFFEE = """() => fetch('/api/jobs?q=coffee.jpg&limit=1').then(r => r.json())
  .then(d => d.items[0])"""


def test_editor_saves_brightness_and_contrast_as_a_new_result(
    page: Any, photos: dict[str, Path]
) -> None:
    upload(page, photos["coffee.jpg"])
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('coffee.jpg')")
    tile(page, "coffee.jpg").locator("[data-action=edit]").click()
    editor = page.locator("editor-dialog dialog")
    editor.wait_for(state="visible")
    page.wait_for_selector("editor-dialog .editor-dialog__loading[hidden]", state="attached")
    editor.locator("input[name=mode][value=none]").check()
    editor.locator("input[name=brightness]").fill("50")
    editor.locator("input[name=contrast]").fill("150")
    assert editor.locator("output[name=brightnessValue]").inner_text() == "50%"
    shot(page, "editor-brightness")
    editor.locator("[data-action=save]").click()
    editor.wait_for(state="hidden")
    page.wait_for_function(TWO_COFFEE_RESULTS)
    derived = page.evaluate(NEWEST_COFFEE)
    assert derived["options"] == {"brightness": 0.5, "contrast": 1.5}
    assert derived["status"] == "completed" and derived["result"]["format"] == "png"


JOB_AND_BATCH = """(name) => fetch('/api/jobs?q=' + name).then(r => r.json())
  .then(d => fetch('/api/batches/' + d.items[0].batch_id).then(r => r.json())
    .then(batch => ({ job: d.items[0], batch })))"""


def test_times_follow_the_browsers_locale_and_time_zone_everywhere(
    browser: Any, server: str, photos: dict[str, Path], tmp_path: Path
) -> None:
    zone = "Pacific/Auckland"  # far from the server's clock, and a 12-hour locale
    context = browser.new_context(base_url=server, locale="en-US", timezone_id=zone)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto("/")
    tab.wait_for_selector("#connection[data-state=open]")
    photo = tmp_path / "clock-check.jpg"
    shutil.copy(photos["chelsea.jpg"], photo)
    upload(tab, photo)
    tab.wait_for_selector("li.result-tile[data-status=completed]:has-text('clock-check.jpg')")
    found = tab.evaluate(JOB_AND_BATCH, photo.name)

    def local(iso: str) -> datetime:
        return datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))

    name = f"1 image · {local(found['batch']['created_at']):%-I:%M %p}"
    assert name in tab.locator("drop-zone .drop-zone__message").inner_text()
    started = tab.locator("li.result-tile job-card .job-card__started").first.inner_text()
    assert started == f"Started {local(found['job']['start_time']):%-I:%M:%S %p}"
    tab.keyboard.press("j")
    tab.wait_for_selector("job-queue-modal batch-card")
    names = tab.locator("job-queue-modal .batch-card__name").all_inner_texts()
    assert name in names, names
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# Every violation of the Content-Security-Policy, from the first byte of the page on.
RECORD_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""

CHARTS_DRAWN = """() => ['hours', 'stages', 'sizes', 'wait', 'eta'].every((name) => {
  const figure = document.querySelector(`analytics-view figure[data-chart=${name}]`);
  return Number(figure.dataset.points) > 0 && figure.querySelector('canvas') !== null;
})"""

# How many pixels of a chart's canvas have a theme colour: the chart drew its data, not only
# its axes and grid (a canvas converts the custom property's value to RGB for comparison).
PAINTED = """([chart, property]) => {
  const probe = document.createElement('canvas').getContext('2d');
  probe.fillStyle = getComputedStyle(document.documentElement).getPropertyValue(property).trim();
  probe.fillRect(0, 0, 1, 1);
  const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
  const canvas = document.querySelector(`analytics-view figure[data-chart=${chart}] canvas`);
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [pr, pg, pb, alpha] = pixels.slice(i, i + 4);
    if (Math.abs(pr - r) + Math.abs(pg - g) + Math.abs(pb - b) < 12 && alpha > 200) count += 1;
  }
  return count;
}"""


def test_analytics_opens_with_a_and_charts_real_jobs_without_errors(
    page: Any, photos: dict[str, Path], bad_inputs: dict[str, Path]
) -> None:
    console_errors: list[str] = []
    refused: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
    page.context.add_init_script(RECORD_CSP)
    page.reload()
    page.wait_for_selector("#connection[data-state=open]")
    upload(page, photos["coffee.jpg"], photos["astronaut.jpg"], bad_inputs["corrupt_image_png"])
    for name, status in (("coffee.jpg", "completed"), ("astronaut.jpg", "completed"),
                         ("truncated.png", "failed")):  # fmt: skip
        page.wait_for_selector(f"li.result-tile[data-status={status}]:has-text('{name}')")

    page.keyboard.press("a")
    view = page.locator("analytics-view dialog")
    view.wait_for(state="visible")
    page.wait_for_function(CHARTS_DRAWN)
    for chart, colour in (
        ("hours", "--status-completed"), ("hours", "--status-failed"),
        ("stages", "--chart-median"), ("stages", "--chart-p90"),
        ("sizes", "--chart-median"), ("wait", "--chart-p90"),
        ("eta", "--chart-predicted"), ("eta", "--chart-actual"),
    ):  # fmt: skip
        assert page.evaluate(PAINTED, [chart, colour]) > 0, f"{chart} drew nothing in {colour}"
    failed = page.evaluate(
        "() => fetch('/api/jobs?q=truncated.png').then(r => r.json()).then(d => d.items[0])"
    )
    reasons = view.locator("[data-chart=failures] tbody th").all_inner_texts()
    assert failed["error"]["code"] in reasons, reasons
    shot(page, "analytics")

    # The batch card links to the same view, from the batch's start.
    page.keyboard.press("Escape")
    view.wait_for(state="hidden")
    page.keyboard.press("j")
    page.locator("job-queue-modal dialog").wait_for(state="visible")
    page.click("#queue-tab-batches")
    card = page.locator(f"job-queue-modal batch-card[batch-id='{failed['batch_id']}']")
    card.locator("[data-action=analytics]").click()
    view.wait_for(state="visible")
    page.wait_for_function(CHARTS_DRAWN)
    assert view.locator("select[name=since] option:checked").inner_text().startswith("Since ")

    assert page.evaluate("window.__csp") == [], "the Content-Security-Policy blocked something"
    # The one error the browser logs is the failed image's tile asking for a thumbnail the
    # server cannot render from a truncated file (422) while the job was still queued or
    # running (nobody knew yet); once it failed, the tile asks no more.
    assert all(f"/api/jobs/{failed['id']}/thumbnail" in url for url in refused), refused
    assert len(console_errors) == len(refused), console_errors
    assert all(e.startswith("Failed to load resource") for e in console_errors), console_errors


def test_options_saved_as_a_preset_fill_the_next_drop(
    page: Any, photos: dict[str, Path], tmp_path: Path
) -> None:
    zone = "drop-zone"
    page.select_option(f"{zone} select[name=format]", "webp")
    page.check(f"{zone} input[name=use_background]")
    page.fill(f"{zone} input[name=background_color]", "#00ff00")
    page.select_option(f"{zone} select[name=priority]", "10")
    page.check(f"{zone} input[name=post_process_mask]")
    assert not page.is_checked(f"{zone} input[name=refine_foreground]")  # off by default
    page.check(f"{zone} input[name=refine_foreground]")
    page.click("preset-picker [data-action=new]")
    page.fill("preset-picker input[name=preset_name]", "<b>shop</b>")
    page.click("preset-picker [data-action=save]")
    page.wait_for_selector("preset-picker .preset-picker__message:has-text('1–64 letters')")
    page.fill("preset-picker input[name=preset_name]", "Green shop")
    page.click("preset-picker [data-action=save]")
    page.wait_for_selector("preset-picker .preset-picker__message:has-text('Saved preset')")

    # A fresh page starts from the defaults and lists the saved preset; picking it fills
    # the options, and the next drop is sent with them.
    page.reload()
    page.wait_for_selector("#connection[data-state=open]")
    page.wait_for_selector("preset-picker option[value='Green shop']", state="attached")
    assert page.input_value(f"{zone} select[name=format]") == "png"
    page.select_option("preset-picker select", "Green shop")
    assert page.input_value(f"{zone} select[name=format]") == "webp"
    assert page.is_checked(f"{zone} input[name=use_background]")
    assert page.input_value(f"{zone} input[name=background_color]") == "#00ff00"
    assert page.input_value(f"{zone} select[name=priority]") == "10"
    assert page.is_checked(f"{zone} input[name=post_process_mask]")
    assert not page.is_checked(f"{zone} input[name=alpha_matting]")
    assert page.is_checked(f"{zone} input[name=refine_foreground]")
    shot(page, "preset-chosen")
    photo = tmp_path / "preset-shop.jpg"
    shutil.copy(photos["coffee.jpg"], photo)
    with page.expect_response(lambda r: r.url.endswith("/api/batches")) as answer:
        drop(page, photo)
    job = answer.value.json()["jobs"][0]
    assert job["priority"] == 10
    assert job["options"] == {
        "format": "webp", "background_color": [0, 255, 0, 255], "post_process_mask": True,
        "refine_foreground": True,
    }  # fmt: skip
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('preset-shop.jpg')")

    page.click("preset-picker [data-action=delete]")
    page.wait_for_selector("preset-picker .preset-picker__message:has-text('Deleted preset')")
    assert page.locator("preset-picker option[value='Green shop']").count() == 0
    names = page.evaluate("() => fetch('/api/presets').then((r) => r.json())")
    assert names == []


def test_the_token_dialog_logs_the_browser_in_with_a_strict_http_only_cookie(
    browser: Any, tmp_path: Path, tiny_model: Path
) -> None:
    token = "Zq3vG8-hW1nR5tYk0pLs2xC7bN4mJ9dF6aE_uQiOw"
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model)}
    with served(tmp_path, "--token", token, env=env) as (url, _), opened(browser, url) as tab:
        tab.fill("#token-input", token)
        tab.click("token-dialog button[type=submit]")
        tab.wait_for_selector("#connection[data-state=open]")
        cookies = {c["name"]: c for c in tab.context.cookies()}
        login = cookies[f"bgremover_auth_{url.rsplit(':', 1)[1]}"]
        assert login["httpOnly"] and login["sameSite"] == "Strict" and token not in login["value"]
        # The cookie alone lets in what carries no header (a link opened in a new tab).
        assert tab.request.get("/api/jobs").status == 200


def test_every_open_page_shows_a_full_results_disk_and_clears_it_when_freed(
    browser: Any, tiny_model: Path, photos: dict[str, Path], tmp_path: Path
) -> None:
    try:
        disk_context = small_disk(tmp_path / "disk", size_mb=32)
        disk = disk_context.__enter__()
    except CannotMount as exc:
        pytest.skip(f"no size-limited disk to fill: {exc}")
    try:
        env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_STORAGE_URL": disk.as_uri()}
        with served(tmp_path / "data", env=env) as (url, _):
            context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            tabs = [context.new_page(), context.new_page()]
            for tab in tabs:
                tab.goto("/")
                tab.wait_for_selector("#connection[data-state=open]")
                assert tab.locator("outage-banner").is_hidden()
            batch = [tmp_path / f"full-{n}.jpg" for n in range(6)]
            for photo in batch:
                shutil.copy(photos["chelsea.jpg"], photo)
            # The disk fills once a first result is stored, with the rest to go: held by a
            # pause until it is full, so every one of their runs meets the full disk (without
            # it, fast runs could all store their results before the disk filled).
            upload(tabs[0], batch[0])
            tabs[0].wait_for_selector("li.result-tile[data-status=completed]")
            tabs[0].click("#toggle-queue")
            tabs[0].wait_for_selector("#toggle-queue[data-paused=true]")
            upload(tabs[0], *batch[1:])
            for photo in batch[1:]:
                tabs[0].wait_for_selector(
                    f"job-queue-sidebar job-card[data-paused=true]:has-text('{photo.name}')"
                )
            filler = fill(disk)
            tabs[0].click("#toggle-queue")
            for tab in tabs:
                banner = tab.locator("outage-banner")
                banner.wait_for(state="visible")
                assert banner.inner_text().strip() == "Results storage is full: jobs are waiting"
            shot(tabs[1], "storage-full-banner")
            filler.unlink()
            for tab in tabs:
                tab.locator("outage-banner").wait_for(state="hidden")
            for photo in batch:
                tabs[0].wait_for_selector(
                    f"li.result-tile[data-status=completed]:has-text('{photo.name}')"
                )
            context.close()
    finally:
        disk_context.__exit__(None, None, None)


def test_p_pauses_the_queue_and_cards_say_paused_until_resumed(
    page: Any, photos: dict[str, Path], tmp_path: Path
) -> None:
    page.keyboard.press("?")
    help_dialog = page.locator("help-dialog dialog")
    assert "Pause or resume the queue" in help_dialog.inner_text()
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")

    page.keyboard.press("p")
    page.wait_for_selector("#toggle-queue[data-paused=true]:has-text('Resume')")
    page.wait_for_selector("job-queue-sidebar .queue-sidebar__paused:visible")
    held = tmp_path / "held.jpg"
    shutil.copy(photos["coffee.jpg"], held)
    try:
        upload(page, held)
        card = page.locator("job-queue-sidebar job-card[data-paused=true]", has_text="held.jpg")
        card.wait_for()
        assert "Paused" in card.inner_text()
        page.keyboard.press("j")
        waiting = page.locator(".batch-card__eta", has_text="Paused")
        batch = page.locator("job-queue-modal batch-card", has=waiting).first
        batch.wait_for()
        batch.locator("[data-action=pause-batch]").click()  # held by its own pause too
        batch.locator(".status", has_text="Paused").wait_for()
        shot(page, "queue-paused")
        page.keyboard.press("Escape")
        assert tile(page, "held.jpg").get_attribute("data-status") == "pending"
        page.click("#toggle-queue")  # the queue resumes; the batch's own pause still holds
        page.wait_for_selector("#toggle-queue[data-paused=false]")
        assert page.locator("job-queue-sidebar job-card[data-paused=true]").count() == 1
        page.keyboard.press("j")
        batch.locator("[data-action=pause-batch]", has_text="Resume").click()
        page.keyboard.press("Escape")
    finally:
        page.request.post("/api/queue/resume", headers={"X-BGRemover-Request": "1"})
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('held.jpg')")


def test_the_options_row_offers_this_servers_models_and_a_drop_runs_the_chosen_one(
    browser: Any, tiny_model: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    birefnet = build_family_model(tmp_path / "birefnet-general.onnx", "birefnet")
    ModelStore(cache / "models").catalog.add("birefnet-general", "birefnet", birefnet, "BiRefNet")
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_CACHE_DIR": str(cache)}
    with served(tmp_path / "data", env=env) as (url, _), opened(browser, url) as tab:
        tab.wait_for_selector("drop-zone .drop-zone__model:not([hidden])")
        offered = tab.eval_on_selector_all(
            "drop-zone select[name=model] option", "(options) => options.map((o) => o.value)"
        )
        assert offered == ["isnet-general-use", "birefnet-general"]
        assert tab.input_value("drop-zone select[name=model]") == "isnet-general-use"
        tab.select_option("drop-zone select[name=model]", "birefnet-general")
        photo = tmp_path / "chosen.png"
        Image.new("RGB", (64, 48), (200, 30, 60)).save(photo)
        with tab.expect_response(lambda r: r.url.endswith("/api/batches")) as answer:
            drop(tab, photo)
        job = answer.value.json()["jobs"][0]
        assert job["options"] == {"model": "birefnet-general"}
        card = "li.result-tile[data-status=completed]:has-text('chosen.png')"
        tab.wait_for_selector(card)
        shown = tab.evaluate(f"() => fetch('/api/jobs/{job['id']}').then((r) => r.json())")
        assert shown["result"]["model"] == "birefnet-general"
