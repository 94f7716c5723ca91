"""A JSON Lines work file (`--input=work.jsonl`): one item a line, each with its own source, seeds and settings,
so one job can hold different kinds of work.

    {"source": "bark.png", "seeds": 4}
    {"source": "bark.png", "seeds": [0, 3], "name": "bark_big", "size": 512, "tileable": true}
    # pebbles with an extra loss term
    {"source": "pebbles.png", "loss": "gram:1,swd:0.5", "iterations": 100}

Keys: "source" (required; a relative path is relative to the work file's folder), "seeds" (a count, or a list
of distinct seeds; default --seeds), "name" (the stem of the item's output files, default the source's, so one
photo can appear twice with different settings), and the settings of jobs.ITEM_SETTINGS, which replace the job's
(dataclasses.replace, so the config's own checks apply); "blend" names further weighted sources, like
["b.png:0.3", "c.png:0.2:0.5"], relative to the work file's folder as "source" is. Blank lines and lines whose first character (after
spaces) is `#` are skipped: JSON has no comments, and an item is always an object, `{...}`, so a `#` line
cannot be one; a file with such lines is no longer strict JSON Lines. Every malformed line is found before
anything runs, each reported as `path:line: problem; fix`.
"""

import json

from texsynth_jax import jobs, storage
from texsynth_jax.config import SynthesisConfig, parse_blend

KEYS = ("source", "seeds", "name", *jobs.ITEM_SETTINGS)
EXAMPLE = '{"source": "bark.png", "seeds": 4}'
MAX_ERRORS = 20  # reported at once: more, and the file is likely not a work file at all


def read_work(path: str, default_seeds: list[int], config: SynthesisConfig | None = None) -> list[jobs.WorkItem]:
    """The items of a work file, each checked (its settings against `config`, the job's; None: the
    defaults). JobError listing every malformed line (up to MAX_ERRORS), each `path:line: problem; fix`."""
    config = SynthesisConfig() if config is None else config
    try:
        lines = storage.read_bytes(path).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise jobs.JobError(f"work file {path} cannot be read ({e}); give a UTF-8 text file, one JSON object "
                            f"per line, like {EXAMPLE}") from None
    folder = storage.parent(path)
    items, errors, stems, pairs = [], [], {}, 0
    for number, text in enumerate(lines, 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            item = parse_item(text, path, number, folder, default_seeds, config)
            stem = jobs.output_stem(item)
            if stems.setdefault(stem, number) != number:
                raise jobs.JobError(f"{path}:{number}: its outputs would be named {stem}_*, as line {stems[stem]}'s "
                                    'are; give one of them a "name" of its own')
        except jobs.JobError as e:
            errors.append(str(e))
            if len(errors) == MAX_ERRORS:
                break
            continue
        pairs += len(item.seeds)
        jobs._check_pairs(path, pairs)  # line by line, before more lists are built
        items.append(item)
    if len(errors) == 1:
        raise jobs.JobError(errors[0])
    if errors:
        more = "+" if len(errors) == MAX_ERRORS else ""
        raise jobs.JobError(f"work file {path} has {len(errors)}{more} malformed lines; fix each:\n"
                            + "\n".join(f"  {e}" for e in errors))
    if not items:
        raise jobs.JobError(f"work file {path} holds no items; write one JSON object per line, like {EXAMPLE}")
    jobs.check_work(items, f"--input={path}")
    return items


def parse_item(text: str, path: str, number: int, folder: str, default_seeds: list[int],
               config: SynthesisConfig) -> jobs.WorkItem:
    """One line of a work file as a WorkItem; JobError (`path:number: problem; fix`) if it is not one."""
    where = f"{path}:{number}"
    try:
        value = json.loads(text, object_pairs_hook=lambda pairs: _object(pairs, where))
    except ValueError as e:
        if isinstance(e, jobs.JobError):
            raise
        raise jobs.JobError(f"{where}: not JSON ({e.msg} at column {e.colno}); write one JSON object per line, "
                            f"like {EXAMPLE}") from None
    if not isinstance(value, dict):
        raise jobs.JobError(f"{where}: {_kind(value)} is not an item; write one JSON object per line, like {EXAMPLE}")
    unknown = [key for key in value if key not in KEYS]
    if unknown:
        raise jobs.JobError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(KEYS)}")
    source = value.get("source")
    if not isinstance(source, str) or not source.strip():
        raise jobs.JobError(f'{where}: "source" is {"missing" if source is None else json.dumps(source)}; give the '
                            'image as a path, like "source": "bark.png" (relative to the work file\'s folder)')
    image = storage.resolve(folder, source)
    if not storage.isfile(image):
        raise jobs.JobError(f"{where}: source {image} not found; check the path (a relative one is relative to "
                            "the work file's folder)")
    seeds = _seeds(value["seeds"], where) if "seeds" in value else list(default_seeds)
    if "name" in value:
        jobs.check_name(value["name"], where)
    settings = {key: value[key] for key in jobs.ITEM_SETTINGS if key in value}
    if "blend" in settings:
        settings["blend"] = _blend(settings["blend"], folder, where)
    if isinstance(settings.get("colors"), str) and settings["colors"] not in ("", "source"):
        settings["colors"] = storage.resolve(folder, settings["colors"])
        if not storage.isfile(settings["colors"]):
            raise jobs.JobError(f"{where}: palette image {settings['colors']} not found; check the path (a relative "
                                "one is relative to the work file's folder), or give \"source\"")
    item = jobs.WorkItem(image, seeds, value.get("name"), settings or None, path, number)
    jobs.item_config(item, config)  # the config's own checks, named by the item's line
    return item


def _blend(value, folder: str, where: str) -> tuple[str, ...]:
    """An item's "blend" (a list of "path:weight[:source_scale]" texts, or one comma-separated text) with its
    paths relative to the work file's folder, each found."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise jobs.JobError(f'{where}: blend {json.dumps(value)} is not a list of "path:weight" texts; give one like '
                            '["b.png:0.3", "c.png:0.2"]')
    try:
        parsed = parse_blend(items)
    except ValueError as e:
        raise jobs.JobError(f"{where}: {e}") from None
    out = []
    for path, weight, scale in parsed:
        image = storage.resolve(folder, path)
        if not storage.isfile(image):
            raise jobs.JobError(f"{where}: blend image {image} not found; check the path (a relative one is relative "
                                "to the work file's folder)")
        out.append(f"{image}:{weight:g}" + ("" if scale is None else f":{scale:g}"))
    return tuple(out)


def _object(pairs, where: str) -> dict:
    """A JSON object that names each key once (json.loads would keep the last silently)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise jobs.JobError(f"{where}: key {key!r} is given twice; give each key once")
        seen.add(key)
    return dict(pairs)


def _kind(value) -> str:
    return {list: "a JSON list", str: "a JSON string", bool: "a JSON bool", type(None): "null"}.get(
        type(value), "a JSON number")


def _seeds(value, where: str) -> list[int]:
    """A count N (seeds 0..N-1) or a list of distinct seeds, as jobs.parse_seeds takes them from a flag."""
    is_int = lambda x: isinstance(x, int) and not isinstance(x, bool)
    if is_int(value):
        return jobs.parse_seeds(str(value), f"{where}: seeds")
    if isinstance(value, list) and value and all(is_int(s) for s in value):
        if len(value) > jobs.MAX_SEEDS:  # before the text of them is built
            raise jobs.JobError(f"{where}: seeds lists {len(value)} seeds, more than {jobs.MAX_SEEDS}, which run as "
                                "one batch; list at most that many per item")
        if min(value) < 0 or max(value) >= 2**31 or len(set(value)) != len(value):
            raise jobs.JobError(f"{where}: seeds {json.dumps(value)} has a negative, too large or repeated seed; "
                                "list each seed once, in 0..2**31-1, like [0, 3]")
        return list(value)
    raise jobs.JobError(f"{where}: seeds {json.dumps(value)} is not a count or a list of seeds; give a count like 4 "
                        "(seeds 0..3) or a list like [0, 3]")
