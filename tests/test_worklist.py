"""JSON Lines work files (worklist.py) and the results manifest (results.py): every malformed line found up
front with its number; a job of mixed settings split between two processes into one merged results.jsonl;
--resume by the manifest and the files, not by file names alone."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from texsynth_jax import RunOptions, SynthesisConfig, defaults, jobs, results, run_job, worklist
from test_run import RUN_PY, cli_env, in_process  # noqa: F401 (cli_env is a fixture)
from test_run_scale import free_port

# Two shallow layers: a tileable size need only be even, and each config compiles in seconds.
CONFIG = SynthesisConfig(size=(32, 32), layers=("conv1_1", "pool1"), layer_weights=(1.0, 1.0), iterations=2,
                         coarse_iterations=())
SHALLOW = ["--layers=conv1_1,pool1", "--size=32", "--coarse_iterations=", "--iterations=2"]


def texture(path, size, box=None):
    """A crop (box) of the shipped photo, resized to size x size: a real texture, small."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(defaults.DEFAULT_TEXTURE) as img:
        img.convert("RGB").crop(box or (0, 0, *img.size)).resize((size, size), Image.LANCZOS).save(path)
    return str(path)


def size_of(path):
    with Image.open(path) as img:
        return img.size


def test_a_work_file_reports_every_malformed_line_with_its_number(tmp_path, capsys):
    texture(tmp_path / "photos" / "bark.png", 40)
    work = tmp_path / "work.jsonl"
    work.write_text("\n".join([
        "# a comment, then a blank line",
        "",
        '{"source": "photos/bark.png", "seeds": 2}',
        '{"source": "photos/bark.png", "seeds": [0, 3], "name": "bark_tile", "size": 48, "tileable": true, '
        '"loss": "gram:1,hist:0.5", "iterations": 5}',
        '{"source": "photos/bark.png" "seeds": 2}',
        '["photos/bark.png", 2]',
        '{"source": "photos/bark.png", "name": "b2", "sise": 64}',
        '{"source": "photos/bark.png", "name": "b3", "seeds": [1, 1]}',
        '{"source": "photos/nothere.png"}',
        '{"source": "photos/bark.png", "name": "b4", "size": 41, "tileable": true}',
        '{"source": "photos/bark.png", "name": "b5", "loss": "gram:1,nope:1"}',
        '{"source": "photos/bark.png", "seeds": 1}',
        '{"source": "photos/bark.png", "name": "../b6"}',
    ]) + "\n")
    with pytest.raises(jobs.JobError) as caught:
        jobs.read_sources(str(work), [0], CONFIG)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"work file {work} has 9 malformed lines; fix each:"
    expected = {5: "not JSON", 6: "a JSON list is not an item", 7: "unknown key 'sise'; use source, seeds, name, size",
                8: "repeated seed", 9: "nothere.png not found", 10: "size 41 is not a multiple of 2 (pool1); use 42",
                11: "loss term 'nope' is unknown", 12: 'as line 3\'s are; give one of them a "name"',
                13: "cannot name output files"}
    assert len(lines) == 1 + len(expected)
    for line, (number, words) in zip(lines[1:], expected.items()):
        assert line.startswith(f"  {work}:{number}: ") and words in line, (number, line)
    # The valid lines: relative to the work file's folder, seeds a count or a list, settings as the config's.
    work.write_text("\n".join(open(work).read().splitlines()[:4]) + "\n")
    items = jobs.read_sources(str(work), [7], CONFIG)
    bark = str(tmp_path / "photos" / "bark.png")
    assert items == [jobs.WorkItem(bark, [0, 1], None, None, str(work), 3),
                     jobs.WorkItem(bark, [0, 3], "bark_tile", {"size": 48, "tileable": True, "loss": "gram:1,hist:0.5",
                                                                "iterations": 5}, str(work), 4)]
    tile = jobs.item_config(items[1], CONFIG)
    assert tile.size == (48, 48) and tile.tileable and tile.loss == ("gram:1", "hist:0.5")
    assert tile.layers == CONFIG.layers and tile.iterations == 5
    assert [jobs.output_stem(item) for item in items] == ["bark", "bark_tile"]
    # The command line: one error line naming the line, before anything is written (no weights, no folder).
    work.write_text('{"source": "photos/bark.png", "seeds": 2, "tileable": "yes"}\n')
    code, err = in_process([f"--input={work}", f"--output_dir={tmp_path / 'out'}", *SHALLOW], capsys)
    assert code == 2 and err.strip() == f"error: {work}:1: tileable='yes' is not a bool; give a bool like True or False"
    assert not (tmp_path / "out").exists()
    assert worklist.KEYS[:3] == ("source", "seeds", "name")


def test_two_processes_run_a_work_file_of_mixed_settings(tmp_path, cli_env, weights_path):
    """Three items, two sizes, one tileable with a loss of its own, one photo twice under two names: the pairs
    are dealt so that process 1 has the extra config to compile and ends last; process 0 waits for it and
    merges both hosts' lines into results.jsonl, in the work file's order."""
    texture(tmp_path / "gravel.png", 64)
    texture(tmp_path / "crops" / "corner.png", 48, (0, 0, 128, 128))
    work = tmp_path / "work.jsonl"
    work.write_text('{"source": "gravel.png", "seeds": 2}\n'
                    '{"source": "crops/corner.png", "seeds": [5]}\n'
                    '{"source": "gravel.png", "seeds": [3], "name": "gravel_tile", "size": 48, "tileable": true, '
                    '"loss": "gram:1,hist:0.5"}\n')
    out = tmp_path / "out"
    port = free_port()
    common = [sys.executable, RUN_PY, f"--input={work}", f"--weights={weights_path}", *SHALLOW,
              f"--output_dir={out}", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    procs = [subprocess.Popen([*common, f"--process_id={i}"], cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert f"results: 4 line(s) in {out / 'results.jsonl'}" in logs[0], logs[0]
    lines = [json.loads(text) for text in (out / "results.jsonl").read_text().splitlines()]
    # Dealt round-robin: gravel 0 and corner 5 to process 0; gravel 1 and gravel_tile 3 to process 1.
    assert [(l["line"], l["name"], l["process"], l["seeds"]) for l in lines] == [
        (1, "gravel", 0, [0]), (1, "gravel", 1, [1]), (2, "corner", 0, [5]), (3, "gravel_tile", 1, [3])]
    assert lines[3]["settings"] == {"size": 48, "tileable": True, "loss": "gram:1,hist:0.5"}
    assert {l["source"] for l in lines} == {str(tmp_path / "gravel.png"), str(tmp_path / "crops" / "corner.png")}
    for line in lines:
        assert line["status"] == "complete" and line["seconds"] > 0
        assert line["judge"]["distance_mean"] > 0 and len(line["judge"]["distance"]) == len(line["seeds"])
        side = 48 if line["name"] == "gravel_tile" else 32
        assert [size_of(out / n) for n in line["outputs"]["images"]] == [(side, side)] * len(line["seeds"])
        assert [size_of(out / n) for n in line["outputs"]["tiled"]] == [(96, 96)] * (side == 48)
        record = json.loads((out / line["outputs"]["record"]).read_text())
        assert record["seeds"] == line["seeds"] and record["config"]["size"] == [side, side]
        assert record["config"]["loss"] == (["gram:1", "hist:0.5"] if side == 48 else ["gram:1"])
        assert (out / line["outputs"]["sheet"]).is_file()
    # Each host's own manifest holds its own lines.
    for process in (0, 1):
        own = [json.loads(t) for t in (out / f"results_p{process}.jsonl").read_text().splitlines()]
        assert own == [l for l in lines if l["process"] == process]
    assert "results:" not in logs[1] and "merged what is there" not in logs[0]  # process 0 merges, all of it


def test_resume_goes_by_the_manifest_and_the_files(tmp_path, weights_path):
    """A rerun with --resume skips the items its manifest lists as complete whose files are all there; an item
    whose image was deleted runs again, and so does one whose files are all there but whose line is gone."""
    texture(tmp_path / "a.png", 40)
    work = tmp_path / "work.jsonl"
    work.write_text('{"source": "a.png"}\n{"source": "a.png", "seeds": [2], "name": "a_long", "iterations": 3}\n')
    items = jobs.read_sources(str(work), [0], CONFIG)
    out = tmp_path / "out"
    said = []
    options = RunOptions(output_dir=str(out), resume=True, mesh="none", log_every=100, judge=False)

    def run():
        said.clear()
        report = run_job(items, weights_path, CONFIG, options, log=said.append)
        return [r.status for r in report.results]

    def manifest():
        return [json.loads(t) for t in (out / "results.jsonl").read_text().splitlines()]

    assert run() == ["complete", "complete"]  # a first run with --resume finds nothing to resume
    first = manifest()
    assert [(l["name"], l["status"], l["seeds"]) for l in first] == [("a", "complete", [0]),
                                                                      ("a_long", "complete", [2])]
    assert json.loads((out / "a_long_run.json").read_text())["iterations_done"] == 3
    assert (out / "results_p0.jsonl").read_text() == (out / "results.jsonl").read_text()

    assert run() == ["skipped", "skipped"]
    assert f"{work}:1: a: already done in {out}, skipped (--resume)" in said
    assert manifest() == first

    os.unlink(out / "a_long_seed2.png")  # the record still says complete: only the manifest's list of files knows
    assert run() == ["skipped", "complete"]
    assert any("a_long: results_p0.jsonl says complete, but a_long_seed2.png is missing: running it again" in line
               for line in said), said
    assert size_of(out / "a_long_seed2.png") == (32, 32)

    # Every file of "a" is there, but its manifest line is not: it is not finished by file names alone.
    kept = [l for l in (out / "results_p0.jsonl").read_text().splitlines() if json.loads(l)["name"] != "a"]
    (out / "results_p0.jsonl").write_text("\n".join(kept) + "\n")
    assert run() == ["skipped", "complete"]
    assert [l["name"] for l in manifest()] == ["a", "a_long"]


class FakeClient:
    """The coordination service's key-value store as results.finish uses it."""

    def __init__(self, said):
        self.said, self.deleted, self.set = dict(said), [], {}

    def key_value_dir_get(self, key):
        return [(k, v) for k, v in self.said.items() if k.startswith(key)]

    def key_value_delete(self, key):
        self.deleted.append(key)

    def key_value_set(self, key, value, allow_overwrite=False):
        self.set[key] = value


def test_process_0_merges_what_is_there_and_says_which_hosts_are_missing(tmp_path, monkeypatch):
    """Three hosts: host 1 stopped (its line is merged), host 2 never said it was done (the wait times out):
    one line says so; lines of other jobs' items, or of this item with other settings, are left out."""
    work = [jobs.WorkItem("/data/a.png", [0, 1, 2], file="w.jsonl", line=1),
            jobs.WorkItem("/data/a.png", [0], "b", {"size": 48}, "w.jsonl", 3)]
    line = lambda name, seeds, process, settings=None: json.dumps(
        {"name": name, "source": "/data/a.png", "seeds": seeds, "settings": settings or {}, "process": process,
         "status": "complete"})
    (tmp_path / "results_p0.jsonl").write_text("\n".join([line("b", [0], 0, {"size": 48}), line("a", [0], 0)]) + "\n")
    (tmp_path / "results_p1.jsonl").write_text("\n".join([line("a", [1], 1), line("zzz", [1], 1),
                                                          line("b", [0], 1, {"size": 64}), "not json"]) + "\n")
    key = "texsynth_jax/results/" + results._job_id(str(tmp_path), work) + "/"
    client = FakeClient({key + "1": "stopped"})
    monkeypatch.setattr(results, "_client", lambda: client)
    said = []
    results.finish(str(tmp_path), work, 0, 3, stopped=False, timeout=0, say=said.append, should_stop=lambda: False)
    assert said == [f"results: merged what is there, 3 line(s), into {tmp_path / 'results.jsonl'}: host(s) 1 "
                    "stopped early; host(s) 2 had not finished within 0 s; their items are missing until they "
                    "finish and the job is rerun with --resume"]
    merged = [json.loads(t) for t in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(l["name"], l["seeds"], l["process"], l["line"]) for l in merged] == [
        ("a", [0], 0, 1), ("a", [1], 1, 1), ("b", [0], 0, 3)]
    assert client.deleted == [key + "1"]
    # Another host says so and goes; without a coordination service process 0 merges at once and says why.
    results.finish(str(tmp_path), work, 2, 3, stopped=False, timeout=0, say=said.append, should_stop=lambda: False)
    assert client.set == {key + "2": "done"}
    monkeypatch.setattr(results, "_client", lambda: None)
    results.finish(str(tmp_path), work, 0, 3, stopped=False, timeout=60, say=said.append, should_stop=lambda: False)
    assert said[-1].endswith("into " + str(tmp_path / "results.jsonl") + ": no jax.distributed coordination "
                             "service to wait on; their items are missing until they finish and the job is rerun "
                             "with --resume")
