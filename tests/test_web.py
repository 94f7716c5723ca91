"""The web page (texsynth_jax.web, `texsynth serve`): its runs against the CLI's, its checks, and the page itself
in a real browser (headless Chromium driven by Playwright; .ci/run installs Debian's chromium)."""

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from texsynth_jax import SynthesisConfig, web
from texsynth_jax import cli as cli_lib
from texsynth_jax.config import PAPER_MODE
from test_engine import counted_compiles
from test_run import RUN_PY, cli, cli_env, in_process  # noqa: F401 (cli_env: a fixture)

# Small and quick: VGG's first layers, one coarse scale of 2 iterations, 2 at the full size.
BASE = SynthesisConfig(layers=("conv1_1", "pool1", "pool2"), layer_weights=(1.0, 1.0, 1.0), coarse_iterations=(2,),
                       iterations=2)
BASE_FLAGS = ["--layers=conv1_1,pool1,pool2", "--coarse_iterations=2", "--iterations=2"]  # the same
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]


def photo(path, size=64, seed=0):
    """A real texture: the shipped gravel photo, cropped (and flipped by seed) to `size`."""
    from texsynth_jax import defaults
    image = np.asarray(Image.open(defaults.DEFAULT_TEXTURE).convert("RGB"))[:size, :size]
    Image.fromarray(image[:, ::-1] if seed else image).save(path)
    return str(path)


def finish(studio, *args, **kwargs):
    """Run a page synthesis to its end: (its last update, every update)."""
    updates = list(studio.run(*args, **kwargs))
    return updates[-1], updates


def test_page_settings_become_the_config():
    settings = web.PageSettings(size=128, seeds=3, tileable=True, loss="Gram + spectrum", mode="coarse to fine")
    config = web.synthesis_config(BASE, settings)
    assert (config.size, config.tileable, config.loss) == ((128, 128), True, ("gram:1", "spectrum:0.3"))
    assert (config.layers, config.coarse_iterations, config.iterations) == (BASE.layers, (2,), 2)  # the base's
    paper = web.synthesis_config(SynthesisConfig(), web.PageSettings(mode="paper", iterations=40),
                                 blends=[("b.png", 0.3), ("c.png", 0.25)])
    for name, value in PAPER_MODE.items():  # as `texsynth --paper`, but for what the page sets
        if name not in ("size", "tileable", "loss", "iterations"):
            assert getattr(paper, name) == value, name
    assert paper.iterations == 40 and paper.blend == ("b.png:0.3", "c.png:0.25")


def test_command_carries_every_changed_setting():
    config = web.synthesis_config(BASE, web.PageSettings(size=96, tileable=True))
    args = web.command(config, "in/p.png", 2, "out/run")
    assert args[:3] == ["texsynth", "--input=in/p.png", "--seeds=2"] and args[-1] == "--output_dir=out/run"
    assert set(args[3:-1]) == {"--size=96", "--tileable", "--layer_weights=1,1,1", *BASE_FLAGS}


def test_mask_from_painted_layers():
    strokes = np.zeros((6, 8, 4), np.uint8)
    strokes[1:3, 2:5] = (255, 0, 255, 255)
    other = np.zeros((6, 8, 4), np.uint8)
    other[5, 7, 3] = 40  # a faint stroke counts
    mask = web.mask_from_layers([strokes, other, np.zeros((3, 3, 4))], (6, 8))  # a layer of another size: not ours
    expected = np.zeros((6, 8), np.uint8)
    expected[1:3, 2:5] = expected[5, 7] = 255
    np.testing.assert_array_equal(mask, expected)


def test_map_from_painted_layers_snaps_to_the_brush_colours():
    red, blue = web.MAP_COLOURS["red"], web.MAP_COLOURS["blue"]
    under, over = np.zeros((4, 6, 4), np.uint8), np.zeros((4, 6, 4), np.uint8)
    under[:, :3] = (*red, 255)
    under[0, 3] = (200, 40, 90, 30)  # a soft edge of a red stroke: nearer red than any other
    over[2:, 2:5] = (*blue, 255)  # painted later: on top
    out = web.map_from_layers([under, over], (4, 6))
    expected = np.full((4, 6, 3), 255, np.uint8)
    expected[:, :3] = expected[0, 3] = red
    expected[2:, 2:5] = blue
    np.testing.assert_array_equal(out, expected)
    assert web.map_from_layers([np.zeros((4, 6, 4), np.uint8)], (4, 6)) is None


def test_page_map_gives_each_region_its_photo(tmp_path, weights_path):
    import skimage.data
    brick = tmp_path / "brick.png"
    Image.fromarray(skimage.data.brick()[:128, :128]).convert("RGB").save(brick)
    strokes = np.zeros((200, 200, 4), np.uint8)  # the editor's canvas: any size, resized to the output's
    strokes[:, :100] = (*web.MAP_COLOURS["red"], 255)
    studio = web.Studio(str(tmp_path / "out"), BASE, weights_path)
    last, _ = finish(studio, web.PageSettings(size=64, seeds=1), photo=photo(tmp_path / "gravel.png"),
                     map_layers=[strokes], region_photos={"red": str(brick), "green": None})
    assert "Done" in last["status"], last["status"]
    record = json.load(open(os.path.join(last["folder"], "gravel_run.json")))
    assert [r["colour"] for r in record["guide"]["regions"]] == ["e6194b"]
    assert record["guide"]["regions"][0]["path"] == os.path.join(last["folder"], "red_brick.png")
    painted = np.asarray(Image.open(os.path.join(last["folder"], "map.png")))
    assert {tuple(c) for c in painted.reshape(-1, 3)} == {web.MAP_COLOURS["red"], web.UNPAINTED}
    distances = record["judge"]["region_distances"]
    assert set(distances) == {"e6194b", "ffffff"} and "red **" in last["judge"] and "unpainted **" in last["judge"]
    assert f"--guide={last['folder']}/map.png" in last["command"] and "--region=e6194b:" in last["command"]
    refused, _ = finish(studio, web.PageSettings(size=64), photo=photo(tmp_path / "g.png"),
                        region_photos={"blue": str(brick)})
    assert "nothing is painted on the map" in refused["status"]


def stroke(shape):
    """An image editor layer of `shape` with one painted pixel."""
    layer = np.zeros((*shape, 4), np.uint8)
    layer[5, 5] = 255
    return layer


def test_bad_uploads_are_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    studio = web.Studio(str(out), BASE, limits=web.Limits(max_upload_mb=0.01, max_side=100))
    big = tmp_path / "wide.png"
    Image.new("RGB", (300, 20)).save(big)  # small in bytes, too wide in pixels: refused from the header
    noisy = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 90, 3), np.uint8)).save(noisy)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases = {"300x20 pixels, more than the page takes .100 on a side.; shrink it": dict(photo=str(big)),
             r"MB, more than the page takes \(0.01 MB\); give a smaller file": dict(photo=str(noisy)),
             "cannot be read": dict(photo=str(broken)),
             "no photo; drop a texture photo": dict(photo=None),
             "nothing is painted on the image to fill": dict(photo=None, fill_image=np.zeros((40, 40, 4), np.uint8),
                                                             fill_layers=[np.zeros((40, 40, 4), np.uint8)]),
             "the fill strokes have no image under them": dict(photo=None, fill_layers=[stroke((40, 40))]),
             "painted before the image showed": dict(photo=None, fill_image=np.zeros((40, 40, 4), np.uint8),
                                                     fill_layers=[stroke((800, 800))])}
    for words, kwargs in cases.items():
        last, updates = finish(studio, web.PageSettings(size=64), **kwargs)
        assert len(updates) == 1 and last["status"].startswith("**Error:**"), last
        assert len(last["status"].splitlines()) == 1 and re.search(words, last["status"]), last
    last, _ = finish(studio, web.PageSettings(size=64, seeds=99), photo=photo(tmp_path / "p.png"))
    assert "seeds 99 is not in 1..8" in last["status"]
    last, _ = finish(studio, web.PageSettings(size=66, tileable=True), photo=photo(tmp_path / "p.png"))
    assert "Error" in last["status"] and "multiple" in last["status"]  # the config's own check, before the folder
    assert not out.exists()


def test_page_run_writes_the_cli_files_and_reuses_its_programs(tmp_path, weights_path, cli_env):
    out = tmp_path / "page"
    studio = web.Studio(str(out), BASE, weights_path)
    settings = web.PageSettings(size=64, seeds=2, tileable=True)
    source = photo(tmp_path / "gravel.png")
    with counted_compiles() as compiles:
        last, updates = finish(studio, settings, photo=source)
        first = sum(compiles.values())
        again, _ = finish(studio, settings, photo=photo(tmp_path / "other.png", seed=1))
    assert first > 0 and sum(compiles.values()) == first, compiles  # the second run of the shape compiles nothing
    assert updates[0]["status"].startswith("Compiling") and "Done" in last["status"], last["status"]
    assert any("previews" in u and u["previews"] for u in updates[:-1])  # the coarse scale shown as it landed
    assert any(u["status"].startswith("Iteration") and "scale" in u["status"] for u in updates[:-1])
    folder = last["folder"]
    assert os.path.dirname(folder) == str(out) and again["folder"] != folder
    record = json.load(open(os.path.join(folder, "gravel_run.json")))
    assert record["status"] == "complete" and record["page"] and record["config"]["tileable"]
    assert [os.path.basename(p) for p, _ in last["images"]] == ["gravel_seed0_tiled.png", "gravel_seed1_tiled.png"]
    assert "Judge: distance to the source" in last["judge"]
    assert sorted(os.path.basename(f) for f in last["files"]) == [
        "gravel_run.json", "gravel_seed0.png", "gravel_seed0_tiled.png", "gravel_seed1.png", "gravel_seed1_tiled.png"]

    # The command the page shows builds the config the page ran (the browser test runs it: the same images).
    args = last["command"].split()
    assert args[0] == "texsynth" and args[-1] == f"--output_dir={folder}"
    cli_lib.FLAGS.unparse_flags()
    try:
        cli_lib.parse_flags(["run.py", *args[1:]])
        assert json.loads(json.dumps(dataclasses.asdict(cli_lib.from_flags(SynthesisConfig)))) == record["config"]
        assert cli_lib.FLAGS.seeds == "2" and cli_lib.FLAGS.input == os.path.join(folder, "gravel.png")
    finally:
        cli_lib.FLAGS.unparse_flags()
    # A CLI run into the same folder tree: the page's gallery lists it too.
    result = cli([*args[1:-1], f"--output_dir={tmp_path / 'cli'}", "--size=32", "--seeds=1"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr

    shown = web.earlier_runs(str(tmp_path))  # newest first
    assert [os.path.basename(p) for p, _ in shown] == ["gravel_seed0.png", "other_seed0.png", "gravel_seed0.png"]
    assert shown[0][1] == "cli: 32x32, 1 seed(s), complete" and "64x64, 2 seed(s), complete" in shown[1][1]


def test_page_blends_photos_with_their_weights(tmp_path, weights_path):
    studio = web.Studio(str(tmp_path / "out"), BASE, weights_path)
    main, other = photo(tmp_path / "a.png"), photo(tmp_path / "b.png", seed=1)
    refused, _ = finish(studio, web.PageSettings(size=64), photo=main, blends=[(other, 0.6), (other, 0.5)])
    assert "the blend weights add up to 1.1; keep them under 1" in refused["status"]
    last, _ = finish(studio, web.PageSettings(size=64, seeds=1), photo=main,
                     blends=[(other, 0.3), (None, 0.5), (other, 0.25)])  # an empty slot is no photo
    assert "Done" in last["status"], last["status"]
    record = json.load(open(os.path.join(last["folder"], "a_run.json")))
    assert [(os.path.basename(b["path"]), b["weight"]) for b in record["blend"]] == [("blend1_b.png", 0.3),
                                                                                    ("blend2_b.png", 0.25)]
    assert record["main_weight"] == pytest.approx(0.45) and set(record["judge"]["blend_distances"]) == {
        b["path"] for b in record["blend"]}


def test_page_extends_an_image(tmp_path, weights_path):
    studio = web.Studio(str(tmp_path / "out"), BASE, weights_path)
    image = np.asarray(Image.open(photo(tmp_path / "mine.png", size=48)))
    refused, _ = finish(studio, web.PageSettings(size=40, extend=True), fill_image=image)
    assert "the size 40 is smaller than the image to fill (48x48)" in refused["status"]
    last, _ = finish(studio, web.PageSettings(size=64, seeds=1, extend=True), fill_image=image)
    assert "Done" in last["status"], last["status"]
    made = np.asarray(Image.open(os.path.join(last["folder"], "fill_seed0.png")))
    assert made.shape == (64, 64, 3)
    np.testing.assert_array_equal(made[8:56, 8:56], image)  # centred, kept bit for bit
    assert "--fill=" in last["command"] and "--size=64" in last["command"] and "--mask" not in last["command"]


def test_stop_keeps_what_the_run_reached(tmp_path, weights_path):
    studio = web.Studio(str(tmp_path / "out"), dataclasses.replace(BASE, iterations=400),
                        weights_path)
    updates = studio.run(web.PageSettings(size=64, seeds=1), photo=photo(tmp_path / "p.png"), visitor="me")
    assert studio.stop("someone else") == "Nothing is running."
    for update in updates:
        if update["status"].startswith("Iteration") and "scale 2/2" in update["status"]:
            assert studio.stop("me").startswith("Stopping")
            break
    last = list(updates)[-1]
    assert last["status"].startswith("**Stopped; the images reached are saved**"), last["status"]
    record = json.load(open(os.path.join(last["folder"], "p_run.json")))
    assert record["status"] == "interrupted" and 2 < record["iterations_done"] < 402
    assert os.path.isfile(os.path.join(last["folder"], "p_seed0.png"))


def test_serve_refuses_flags_the_page_sets(tmp_path, capsys):
    out = tmp_path / "out"
    for args, words in {("--size=64",): "--size is chosen on the page, not by `texsynth serve`",
                        ("--resume",): "--resume does not apply to the page's runs",
                        ("--port=0",): r"--port=0 is not in 1\.\.65535",
                        ("--max_upload_mb=0",): "--max_upload_mb=0 must be positive"}.items():
        code, stderr = in_process(["serve", *args, f"--output_dir={out}"], capsys)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and re.search(words, errors[0]), stderr
    assert not out.exists()


def test_serve_on_another_address_warns(tmp_path, cli_env):
    with socket.socket() as taken:  # a port in use: the page cannot start, after the warning
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(["serve", "--host=0.0.0.0", f"--port={port}", f"--output_dir={tmp_path / 'out'}"], cli_env,
                      tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.startswith(("warning:", "error:"))]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("warning: --host=0.0.0.0: anyone who can reach this machine") and len(lines) == 2
    assert lines[1].startswith(f"error: cannot serve on 0.0.0.0:{port}") and "choose another --port" in lines[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def served(tmp_path, weights_path, cli_env):
    """`texsynth serve` in a real process on a free local port: (address, output folder)."""
    port, out = free_port(), tmp_path / "out"
    server = subprocess.Popen([sys.executable, RUN_PY, "serve", f"--port={port}", f"--output_dir={out}",
                               *BASE_FLAGS], cwd=tmp_path, env=cli_env, stderr=subprocess.PIPE, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True).start()
    address = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while not any(address in line for line in lines):
        assert server.poll() is None and time.time() < deadline, lines
        time.sleep(0.2)
    yield address, out
    server.terminate()
    server.wait(30)


@pytest.fixture()
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("no chromium here: .ci/run installs Debian's (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        context = launched.new_context(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
        yield context.new_page()
        launched.close()


def wait_for_results(page, timeout=240_000) -> str:
    """Wait for the results gallery or an error; the status line, which must not be an error."""
    page.wait_for_function("document.querySelector('#results img') || "
                           "document.querySelector('#status').innerText.includes('Error')", timeout=timeout)
    status = page.inner_text("#status")
    assert "Error" not in status, status
    return status


def test_browser_photo_to_downloaded_tile_as_the_cli_makes_it(served, browser, tmp_path, cli_env):
    address, out = served
    page = browser
    page.goto(address, wait_until="networkidle")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot a picture")
    page.locator("#photo input[type=file]").set_input_files(str(broken))
    page.wait_for_function("document.querySelector('#status').innerText.includes('Error')")
    assert re.fullmatch(r"Error: photo broken\.png cannot be read \(.*\); give a PNG or JPEG file",
                        page.inner_text("#status").strip()), page.inner_text("#status")  # a line, no traceback
    page.locator("#photo button[aria-label=Clear]").click()  # the file box's x, as a person would
    page.locator("#photo input[type=file]").set_input_files(photo(tmp_path / "gravel.png"))
    page.wait_for_selector("#preview img")
    assert "Photo 64x64: ready." in page.inner_text("#status")
    page.locator("#size input[type=number]").fill("64")
    page.locator("#size input[type=number]").press("Enter")
    page.locator("#tileable input").check()
    page.click("#go")
    assert "Done" in wait_for_results(page) and "Judge: distance" in page.inner_text("#judge")
    with page.expect_download() as download:
        page.locator('#downloads a[download="gravel_seed0_tiled.png"]').click()
    saved = tmp_path / "downloaded.png"
    download.value.save_as(saved)
    tile = np.asarray(Image.open(saved))
    run = next(out.glob("*-gravel"))
    assert tile.shape == (128, 128, 3)  # the 2x2 repeat of a 64 px seamless tile
    np.testing.assert_array_equal(tile, np.asarray(Image.open(run / "gravel_seed0_tiled.png")))
    np.testing.assert_array_equal(tile[:64, :64], tile[64:, 64:])
    assert page.locator("#history img").count() >= 1  # the gallery of runs in the folder
    # The command the page shows makes the same images from the command line, bit for bit.
    args = page.locator("#command textarea").input_value().split()
    assert args[0] == "texsynth" and "--tileable" in args and "--size=64" in args
    result = cli([*args[1:-1], f"--output_dir={tmp_path / 'cli'}"], cli_env, tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("gravel_seed0.png", "gravel_seed1.png", "gravel_seed0_tiled.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(run / name)), np.asarray(Image.open(tmp_path / "cli" / name)))
    # Nothing outside the output folder: the uploads too are kept in it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "cli", "downloaded.png", "gravel.png", "out"]


def test_browser_paints_a_fill_mask(served, browser, tmp_path):
    address, out = served
    page = browser
    page.goto(address, wait_until="networkidle")
    page.get_by_text("Fill holes in your own image").click()
    blank = page.inner_text("#fill .zoom-number")  # the editor's zoom on its blank canvas
    image = photo(tmp_path / "mine.png", size=96)
    page.locator("#fill input[type=file]").set_input_files(image)
    # Strokes before the editor holds the image land on its blank canvas: wait until it zooms to the image.
    page.wait_for_function(f"document.querySelector('#fill .zoom-number').innerText != {blank!r}", timeout=60_000)
    page.locator("#fill button[aria-label=Brush]").click()
    box = page.locator("#fill canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 30, y)
    page.mouse.down()
    page.mouse.move(x + 30, y, steps=10)
    page.mouse.up()
    page.click("#go")
    assert "Done" in wait_for_results(page)
    run = next(out.glob("*-fill"))
    np.testing.assert_array_equal(np.asarray(Image.open(run / "fill.png")), np.asarray(Image.open(image)))
    mask = np.asarray(Image.open(run / "fill_mask.png"))[..., 0] > 0
    assert 0.02 < mask.mean() < 0.5 and mask[48].any() and not mask[0].any()  # a stroke across the middle
    kept, made = np.asarray(Image.open(image)), np.asarray(Image.open(run / "fill_seed0.png"))
    np.testing.assert_array_equal(made[~mask], kept[~mask])  # the unpainted pixels exactly as they were
    assert (made[mask] != kept[mask]).any()
    record = json.load(open(run / "fill_run.json"))
    assert record["fill"] and record["config"]["mask"].endswith("fill_mask.png")


def test_browser_one_run_at_a_time_the_next_visitor_queued_and_stop(served, browser, tmp_path):
    address, out = served
    first, second = browser, browser.context.new_page()  # two visitors: each page load is a session of its own
    for page, seed in ((first, 0), (second, 1)):
        page.goto(address, wait_until="networkidle")
        page.locator("#photo input[type=file]").set_input_files(photo(tmp_path / f"p{seed}.png", seed=seed))
        page.wait_for_selector("#preview img")
        page.locator("#size input[type=number]").fill("64")
        page.locator("#size input[type=number]").press("Enter")
    first.locator("#iterations input").fill("100000")  # long enough to be stopped
    first.click("#go")
    first.wait_for_function("document.querySelector('#status').innerText.includes('Iteration')", timeout=240_000)
    second.click("#go")
    second.get_by_text(re.compile(r"queue: 1/1")).first.wait_for(timeout=60_000)  # its place in the queue
    assert not list(out.glob("*-p1"))  # it waits: nothing of it started
    first.click("#stop")
    first.wait_for_function("document.querySelector('#status').innerText.includes('Stopped')", timeout=120_000)
    assert "Done" in wait_for_results(second)
    stopped = json.load(open(next(out.glob("*-p0")) / "p0_run.json"))
    assert stopped["status"] == "interrupted" and os.path.isfile(next(out.glob("*-p0")) / "p0_seed0.png")
