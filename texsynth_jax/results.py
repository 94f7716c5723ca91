"""The results manifest of a job whose work has WorkItems (a `.jsonl` work file): a JSON line per finished item.

Every host keeps `results_p<process>.jsonl` in the output folder. Each item it finishes (complete, stalled or
diverged) adds its line there, replacing an earlier line of the same name, and the whole file is rewritten
atomically each time (in a bucket: one upload), as object stores cannot append. At the end process 0 merges every
host's lines into `results.jsonl`, in the order of the work file. A line:

    {"line": 3, "name": "bark_big", "source": "/data/bark.png", "seeds": [0, 2], "settings": {"size": 512},
     "process": 0, "status": "complete", "outputs": {"images": ["bark_big_seed0.png", "bark_big_seed2.png"],
     "tiled": [], "sheet": "bark_big_sheet.png", "record": "bark_big_run.json"}, "judge": {...}, "seconds": 61.2}

Output names are relative to the manifest's folder; "judge" is the record's (null without the judge). An
item split between hosts has a line per host, each with that host's seeds, record and judge figures.
"""

import contextlib
import hashlib
import json
import time

from texsynth_jax import jobs, outputs, storage

HOST_FILE = "results_p{process}.jsonl"
MERGED = "results.jsonl"
POLL_S = 1.0  # how often process 0 looks for the other hosts' word that they are done
_KEY = "texsynth_jax/results/{job}/"  # the coordination service's folder of keys where hosts say so


def file_names(process: int) -> list[str]:
    """The manifests a host may write into the output folder."""
    return [HOST_FILE.format(process=process)] + ([MERGED] if process == 0 else [])


def read(path: str) -> list[dict]:
    """The lines of a manifest that are JSON objects (none if it is missing; the others are skipped)."""
    lines = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for text in storage.read_bytes(path).decode("utf-8").splitlines():
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if isinstance(line, dict) and isinstance(line.get("name"), str):
                    lines.append(line)
    return lines


def host_lines(folder: str, process: int) -> dict[str, dict]:
    """{name: line} of this host's manifest."""
    return {line["name"]: line for line in read(storage.join(folder, HOST_FILE.format(process=process)))}


def entry(src, status: str, record_path: str, seconds: float, process: int) -> dict:
    """The manifest line of a finished source (records.SourcePlan with a work item), from its run record."""
    record = json.loads(storage.read_bytes(record_path))
    listed = record.get("outputs") or {}
    return {"line": src.item.line, "name": src.stem, "source": storage.absolute(src.path), "seeds": list(src.seeds),
            "settings": _json(src.item.settings or {}), "process": process, "status": status,
            "outputs": {"images": listed.get("images") or [], "tiled": listed.get("tiled") or [],
                        "sheet": listed.get("sheet"), "record": storage.basename(record_path)},
            "judge": record.get("judge"), "seconds": round(seconds, 3)}


def save(folder: str, process: int, line: dict) -> None:
    """Add `line` to this host's manifest in place of any line of the same name, rewriting it atomically."""
    name = HOST_FILE.format(process=process)
    lines = [old for old in host_lines(folder, process).values() if old["name"] != line["name"]] + [line]
    outputs.claim(folder, process, [name])
    _write(storage.join(folder, name), lines)


def matches(line: dict | None, src) -> bool:
    """Whether a manifest line is of this very source: name, file, this host's seeds and the item's settings."""
    return (line is not None and line.get("name") == src.stem and line.get("source") == storage.absolute(src.path)
            and line.get("seeds") == list(src.seeds) and line.get("settings") == _json(src.item.settings or {}))


def missing(line: dict, folder: str) -> list[str]:
    """The files a manifest line lists (images, 2x2 repeats, sheet, record) that are not in `folder`."""
    listed = line.get("outputs") or {}
    names = [*(listed.get("images") or []), *(listed.get("tiled") or []), listed.get("sheet"), listed.get("record")]
    present = set(storage.listdir(folder)) if storage.isdir(folder) else set()  # one listing, not a look per file
    return [n for n in names if isinstance(n, str) and n not in present]


def complete(line: dict | None, src, folder: str) -> bool:
    """Whether --resume may skip `src`: its line says complete and every file it lists is there."""
    return matches(line, src) and line.get("status") == "complete" and not missing(line, folder)


def merge(folder: str, work, processes: int) -> int:
    """Every host's lines of this job's items into `results.jsonl`, in the work's order (then by host);
    returns how many. A line of another job, or from an earlier run with other settings, is left out."""
    order = {jobs.output_stem(item): (index, item) for index, item in enumerate(work)}
    merged = []
    for process in range(processes):
        for line in read(storage.join(folder, HOST_FILE.format(process=process))):
            index, item = order.get(line["name"], (None, None))
            if item is not None and _belongs(line, item):
                merged.append((index, process, dict(line, line=getattr(item, "line", None))))
    merged.sort(key=lambda x: x[:2])
    storage.makedirs(folder)  # a process 0 with no share of the work has written nothing yet
    outputs.claim(folder, 0, [MERGED])
    _write(storage.join(folder, MERGED), [line for _, _, line in merged])
    return len(merged)


def finish(folder: str, work, process: int, processes: int, *, stopped: bool, timeout: float, say,
           should_stop) -> None:
    """The end of a job with a manifest. Process 0 waits (at most `timeout` s) for the others to say they are
    done, through jax.distributed's coordination service (its key-value store: unlike a barrier, the others
    need not wait), then merges what is there and says so in one line; the others say whether they finished or
    stopped, and go. A stopped process 0 merges nothing: the rerun with --resume does."""
    key = _KEY.format(job=_job_id(folder, work))
    client = _client() if processes > 1 else None
    if process != 0:
        if client is not None:
            client.key_value_set(f"{key}{process}", "stopped" if stopped else "done", allow_overwrite=True)
        return
    if stopped:
        return
    absent, why = [], ""
    if processes > 1 and client is None:
        absent, why = list(range(1, processes)), "no jax.distributed coordination service to wait on"
    elif processes > 1:
        said, cut = _wait(client, key, processes, timeout, should_stop)
        for k in said:
            with contextlib.suppress(Exception):
                client.key_value_delete(k)  # so that the same job run again in these processes waits anew
        stopped_hosts = [p for p in range(1, processes) if said.get(f"{key}{p}") == "stopped"]
        late = [p for p in range(1, processes) if f"{key}{p}" not in said]
        absent = stopped_hosts + late
        why = "; ".join(part for part in (
            f"host(s) {_list(stopped_hosts)} stopped early" if stopped_hosts else "",
            f"host(s) {_list(late)} had not finished " + ("when the wait was stopped" if cut else
                                                          f"within {timeout:.0f} s") if late else "") if part)
    count = merge(folder, work, processes)
    path = storage.join(folder, MERGED)
    if absent:
        say(f"results: merged what is there, {count} line(s), into {path}: {why}; their items are missing until "
            "they finish and the job is rerun with --resume")
    else:
        say(f"results: {count} line(s) in {path}")


def _wait(client, key: str, processes: int, timeout: float, should_stop) -> tuple[dict[str, str], bool]:
    """({key: word} of the other hosts that said they are done or stopped, whether the wait was cut short),
    waiting until all have said so, `timeout` s have passed, should_stop() or Ctrl-C."""
    deadline, said = time.monotonic() + timeout, {}
    try:
        while True:
            with contextlib.suppress(Exception):  # one call for all hosts; an empty folder of keys may raise
                said = dict(client.key_value_dir_get(key))
            if len(said) >= processes - 1 or time.monotonic() >= deadline:
                return said, False
            if should_stop():
                return said, True
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return said, True


def _client():
    """jax.distributed's client of the coordination service, or None (not initialised, or no such API)."""
    try:
        from jax._src import distributed  # no public name for the key-value store yet
        return distributed.global_state.client
    except (ImportError, AttributeError):
        return None


def _job_id(folder: str, work) -> str:
    """The same text on every host of one job: its folder and items (names and seeds)."""
    text = json.dumps([storage.absolute(folder), [[jobs.output_stem(item), list(item[1])] for item in work]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _belongs(line: dict, item) -> bool:
    settings = item.settings if isinstance(item, jobs.WorkItem) else None
    seeds = line.get("seeds")
    return (line.get("source") == storage.absolute(item[0]) and line.get("settings") == _json(settings or {})
            and isinstance(seeds, list) and all(isinstance(s, int) for s in seeds) and set(seeds) <= set(item[1]))


def _list(numbers) -> str:
    return ", ".join(map(str, numbers))


def _json(value):
    """`value` as it reads back from JSON (tuples as lists), to compare settings with a manifest's."""
    return json.loads(json.dumps(value))


def _write(path: str, lines: list[dict]) -> None:
    storage.write_bytes(path, "".join(json.dumps(line, allow_nan=False) + "\n" for line in lines).encode("utf-8"))
