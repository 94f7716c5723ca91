"""A batch job: many sources, each with its seeds, split between hosts.

`--input` names one image, a folder of images, or a list file (`.txt`): one image per line,
optionally followed by its seeds (`bark.png 0,1,2`, or a count: `bark.png 4`); blank lines and
lines starting with `#` are skipped, relative paths are relative to the list file, and a path with
spaces is quoted (`"my photo.png" 4`) or written as it is when the file exists. A folder's
images that texsynth_jax wrote there itself (outputs.product_files) are not sources. A JSON Lines work
file (`.jsonl`, worklist.py) gives each item settings and an output name of its own: a `WorkItem`.
"""

import collections
import dataclasses
import os
import shlex
from typing import NamedTuple

from texsynth_jax import outputs, storage

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# The seeds of a source run as one batch, so the memory check (budget.py) bounds them far lower; these
# caps only keep the lists themselves from being built beyond reason before that check.
MAX_SEEDS = 1 << 16  # per source
MAX_PAIRS = 1 << 20  # (source, seed) pairs per job


class JobError(ValueError):
    """A batch job that cannot be read; one line naming the problem and the fix."""


# The SynthesisConfig fields a work item may set for itself; the others are the job's, shared by every item.
ITEM_SETTINGS = ("size", "tileable", "loss", "iterations", "coarse_iterations", "source_scale", "blend",
                 "colors")


class WorkItem(NamedTuple):
    """One item of a job with an output name and settings of its own (a line of a `.jsonl` work file).

    A plain (path, seeds) pair is an item with the job's settings, named for its file."""

    path: str
    seeds: list
    name: str | None = None  # the stem of its output files; None: the source's (bark.png -> bark)
    settings: dict | None = None  # {field of ITEM_SETTINGS: value} replacing the job config's
    file: str | None = None  # the work file and line it came from, for messages
    line: int | None = None


def output_stem(item) -> str:
    """The stem of an item's output files: its name, else its source's."""
    name = item.name if isinstance(item, WorkItem) else None
    return name if name is not None else stem(os.fspath(item[0]))


def where(item) -> str:
    """How messages point at an item: `work.jsonl:3`, or its source's path."""
    if isinstance(item, WorkItem) and item.file is not None:
        return f"{item.file}:{item.line}"
    return os.fspath(item[0])


def item_config(item, config):
    """The job's SynthesisConfig with the item's settings (dataclasses.replace: the config's own checks
    apply); JobError naming the item when they are refused."""
    settings = item.settings if isinstance(item, WorkItem) else None
    if not settings:
        return config
    try:
        return dataclasses.replace(config, **settings)
    except ValueError as e:
        raise JobError(f"{where(item)}: {e}") from None


def check_name(name, where_: str) -> None:
    """Raise JobError unless `name` can be the stem of output files in the output folder."""
    if (not isinstance(name, str) or not name.strip() or name != name.strip() or name.startswith(".")
            or any(c in name for c in "/\\\0")):
        raise JobError(f'{where_}: "name" {name!r} cannot name output files; give a plain file stem like '
                       '"bark_big" (no folders, not starting with a dot)')


def parse_seeds(text: str, where: str = "--seeds") -> list[int]:
    """A count N (seeds 0..N-1), or a comma list of distinct non-negative seeds: `3,7,11`, or `7,` for
    the one seed 7."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()] if "," in text else [int(text)]
    except ValueError:
        values = []
    if not values or min(values) < 0 or max(values) >= 2**31:
        raise JobError(f"{where}={text} is not a seed count or list; give a count (4 means seeds 0..3) "
                       "or non-negative seeds like 3,7,11")
    if "," not in text:
        if values[0] < 1:
            raise JobError(f"{where}={text} asks for no seeds; give a count of at least 1")
        if values[0] > MAX_SEEDS:  # refused before the list is built
            raise JobError(f"{where}={text} asks for more than {MAX_SEEDS} seeds, which run as one batch; give at "
                           "most that many per source (the memory check then says how many fit)")
        return list(range(values[0]))
    if len(values) > MAX_SEEDS:
        raise JobError(f"{where} lists {len(values)} seeds, more than {MAX_SEEDS}, which run as one batch; list "
                       "at most that many per source")
    if len(set(values)) != len(values):
        raise JobError(f"{where}={text} repeats a seed; list each seed once")
    return values


def read_sources(input_path: str, default_seeds: list[int], config=None) -> list[tuple[str, list[int]]]:
    """[(image path, seeds)] for an image, a folder of images, or a list file; [WorkItem] for a `.jsonl`
    work file, whose items' settings are checked against `config` (the job's; None: the defaults). Local
    paths or URLs."""
    try:
        folder = storage.isdir(input_path)
    except storage.StorageError:
        raise
    except Exception as e:  # a store that cannot be reached
        raise JobError(f"--input={input_path} cannot be reached ({type(e).__name__}: {e}); check the URL and your "
                       "access to it") from None
    if input_path.lower().endswith(".jsonl") and not folder:
        from texsynth_jax import worklist  # here: worklist imports this module

        return worklist.read_work(input_path, default_seeds, config)
    if folder:
        ours = outputs.product_files(input_path)  # an earlier run's outputs there are not new sources
        names = [n for n in storage.listdir(input_path)
                 if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        images = sorted(storage.join(input_path, n) for n in names if n not in ours)
        if not images:
            raise JobError(f"--input={input_path} is a folder with no images" +
                           (" but texsynth_jax's own outputs" if names else "") + "; put PNG or JPEG files in it")
        jobs = [(path, default_seeds) for path in images]
    elif input_path.lower().endswith(".txt"):
        jobs = _read_list(input_path, default_seeds)
    else:
        return [(input_path, default_seeds)]
    _check_pairs(input_path, sum(len(seeds) for _, seeds in jobs))  # a folder's sources share one list
    check_work(jobs, f"--input={input_path}")
    return jobs


def check_work(work, where: str = "the job") -> None:
    """Raise JobError unless `work` is [(image path, [seed, ...])] (or WorkItems) with distinct non-negative
    int seeds per source and no two sources of the same output name (their outputs would overwrite each other)."""
    for item in work:
        if isinstance(item, WorkItem):
            _check_item(item, where)
        elif not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], (str, os.PathLike))):
            raise JobError(f"{where}: {item!r} is not (image path, [seeds]); give a list of such pairs")
        path, seeds = item[0], item[1]
        if (not isinstance(seeds, (list, tuple)) or not seeds
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds)):
            raise JobError(f"{where}: the seeds of {path} are {seeds!r}; give a non-empty list of ints in 0..2**31-1")
        if len(set(seeds)) != len(seeds):
            raise JobError(f"{where}: the seeds of {path} repeat a seed; list each seed once")
    counts = collections.Counter(output_stem(item) for item in work)
    clash = next((s for s, n in counts.items() if n > 1), None)
    if clash:
        raise JobError(f"{where} has two images named {clash}.*, whose outputs would clash; rename one, or give "
                       'one a "name" of its own in a .jsonl work file')


def _check_item(item: WorkItem, where_: str) -> None:
    if not isinstance(item.path, (str, os.PathLike)):
        raise JobError(f"{where_}: {item!r} has no image path; give WorkItem(path, seeds, ...)")
    if item.name is not None:
        check_name(item.name, f"{where_}: {item.path}")
    if item.settings is not None:
        unknown = sorted(set(item.settings) - set(ITEM_SETTINGS)) if isinstance(item.settings, dict) else [None]
        if unknown:
            raise JobError(f"{where_}: the settings of {item.path} are {item.settings!r}; give a dict of "
                           f"{', '.join(ITEM_SETTINGS)}")


def _read_list(path: str, default_seeds: list[int]) -> list[tuple[str, list[int]]]:
    try:
        lines = storage.read_bytes(path).decode().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise JobError(f"list file {path} cannot be read ({e}); give a text file, one image per line") from None
    folder, jobs, pairs = storage.parent(path), [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, seeds_text = _split_line(line, folder, f"{path}:{number}")
        image = storage.resolve(folder, name)
        seeds = parse_seeds(seeds_text, f"{path}:{number}: seeds") if seeds_text is not None else default_seeds
        pairs += len(seeds)
        _check_pairs(path, pairs)  # line by line, before more lists are built
        jobs.append((image, seeds))
    if not jobs:
        raise JobError(f"list file {path} names no images; write one image path per line")
    return jobs


def _split_line(line: str, folder: str, where: str) -> tuple[str, str | None]:
    """(image, seeds text or None) of a list file's line. A path with spaces is quoted ("my photo.png" 4),
    or written as it is when it names an existing file (my photo.png 4)."""
    text = line.strip()
    parts = text.split()
    if '"' not in text and "'" not in text:
        if len(parts) == 1 or (len(parts) == 2 and set(parts[1]) <= set("0123456789,")):
            return parts[0], parts[1] if len(parts) == 2 else None  # the usual line: no look at the disk
        exists = lambda name: storage.isfile(storage.resolve(folder, name))
        head, _, tail = text.rpartition(" ")
        if exists(text):
            return text, None
        if exists(head.strip()):
            return head.strip(), tail
    try:
        parts = shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise JobError(f"{where}: {text!r} cannot be read ({e}); close the quotes around the path") from None
    if len(parts) > 2:
        raise JobError(f"{where}: expected `image [seeds]`, got {text!r}; separate seeds with commas, not spaces, "
                       'and quote a path with spaces ("my photo.png" 4)')
    return parts[0], parts[1] if len(parts) == 2 else None


def _check_pairs(where: str, pairs: int) -> None:
    if pairs > MAX_PAIRS:
        raise JobError(f"--input={where} asks for more than {MAX_PAIRS} (image, seed) pairs; split it into "
                       "several jobs")


def stem(path: str) -> str:
    return os.path.splitext(storage.basename(path))[0]


def host_jobs(jobs, process_index: int, process_count: int) -> list[tuple[str, list[int]]]:
    """This host's share: every (source, seed) pair numbered in order, every process_count-th one
    from process_index, grouped back by source. Disjoint across hosts, complete together; linear in
    the number of pairs."""
    share, first = [], 0  # first: the number of the source's first pair
    for item in jobs:
        path, seeds = item[0], item[1]
        start = (process_index - first) % process_count
        if seeds[start::process_count]:
            mine = list(seeds[start::process_count])
            share.append(item._replace(seeds=mine) if isinstance(item, WorkItem) else (path, mine))
        first += len(seeds)
    return share
