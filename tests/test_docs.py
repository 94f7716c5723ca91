"""docs/: the API reference builds from the docstrings, every relative link resolves, the flag table is the CLI's."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "bench/README.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(REPO, "docs")) if name.endswith(".md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def read(path: str) -> str:
    with open(os.path.join(REPO, path)) as f:
        return f.read()


def anchors(markdown: str) -> set[str]:
    """The anchors a code host gives the headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def links(markdown: str) -> list[str]:
    """Relative link targets outside code (fenced blocks and inline code)."""
    text = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", markdown, flags=re.S))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_the_link_checker_finds_links_and_anchors():
    page = "# A title\n## Two, words!\nSee [x](docs/a.md#two-words) and ![y](b.png) and [z](https://e.org).\n`[no](c.md)`"
    assert links(page) == ["docs/a.md#two-words", "b.png"]
    assert anchors(page) == {"a-title", "two-words"}


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    folder = os.path.dirname(os.path.join(REPO, page))
    broken = []
    for target in links(read(page)):
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(REPO, page)
        if not os.path.exists(full):
            broken.append(f"{target} (no such file)")
        elif anchor and full.endswith(".md") and anchor not in anchors(open(full).read()):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page}: broken links: {broken}"


def test_api_reference_builds_without_warnings(tmp_path):
    out = tmp_path / "api"
    env = dict(os.environ, PYTHONPATH=REPO, TEXSYNTH_JAX_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, os.path.join("docs", "build_api.py"), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning:" not in proc.stderr, proc.stderr[-3000:]
    package = (out / "texsynth_jax.html").read_text()
    for name in ("SynthesisConfig", "Engine", "CoarseToFine", "run_job", "load_weights", "RunOptions"):
        assert f'id="{name}"' in package, f"{name} is missing from the API reference"
    assert 'id="register"' in (out / "texsynth_jax" / "terms.html").read_text()
    assert 'id="judge"' in (out / "texsynth_jax" / "evaluate.html").read_text()


def cli_flags() -> dict:
    """{name: flag} the command line defines (texsynth_jax/cli.py)."""
    from texsynth_jax import cli

    return {f.name: f for f in cli.FLAGS.get_key_flags_for_module(cli)}


def flag_table(markdown: str) -> dict[str, str]:
    """{flag: default cell} of a markdown table whose first column names flags (several per cell allowed)."""
    table = {}
    for first, default in re.findall(r"^\| (`--\w+`(?:, `--\w+`)*) \| ([^|]*) \|", markdown, re.M):
        for name in re.findall(r"`--(\w+)`", first):
            table[name] = default.strip()
    return table


def check_defaults(table: dict[str, str], flags: dict) -> list[str]:
    """Where a table's default in backticks differs from the flag's (defaults in words are not checked)."""
    wrong = []
    for name, cell in table.items():
        if cell.startswith("`"):
            default = flags[name].default_as_str.strip("'")
            if cell != f"`{default}`":
                wrong.append(f"--{name}: the table says {cell}, the command line {default}")
    return wrong


def test_flags_page_lists_every_flag_with_its_default():
    flags = cli_flags()
    table = flag_table(read("docs/flags.md"))
    assert set(table) == set(flags), (f"docs/flags.md lacks {sorted(set(flags) - set(table))}, "
                                      f"and lists unknown {sorted(set(table) - set(flags))}")
    for name, flag in flags.items():
        if flag.default not in ("", None):
            assert table[name].startswith("`"), f"--{name}: give its default {flag.default_as_str} in backticks"
    assert not check_defaults(table, flags)
