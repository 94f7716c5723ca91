"""Batch jobs: sources from a folder or a list file, and their split between hosts."""

import pytest

from texsynth_jax import jobs


def test_seed_syntax():
    assert jobs.parse_seeds("3") == [0, 1, 2]
    assert jobs.parse_seeds("7,3") == [7, 3]
    assert jobs.parse_seeds("7,") == [7]  # one chosen seed
    for bad in ("0", "a", "1,1", "-1,2", "", ",", "7,,x"):
        with pytest.raises(jobs.JobError, match="seed"):
            jobs.parse_seeds(bad)


def test_folder_and_list_file(tmp_path):
    for name in ("b.png", "a.jpg", "notes.md", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    assert jobs.read_sources(str(tmp_path), [0]) == [(str(tmp_path / "a.jpg"), [0]), (str(tmp_path / "b.png"), [0])]
    listing = tmp_path / "job.txt"
    listing.write_text("# textures\na.jpg 2\n\n/abs/c.png 5,9\nb.png\n")
    assert jobs.read_sources(str(listing), [4]) == [
        (str(tmp_path / "a.jpg"), [0, 1]), ("/abs/c.png", [5, 9]), (str(tmp_path / "b.png"), [4])]
    assert jobs.read_sources("x.png", [1]) == [("x.png", [1])]


def test_a_list_file_names_paths_with_spaces(tmp_path):
    (tmp_path / "my photo.png").write_bytes(b"")
    (tmp_path / "other photo 2.png").write_bytes(b"")
    listing = tmp_path / "job.txt"
    listing.write_text('my photo.png 3\n"my photo.png" 5,6\nother photo 2.png\n\'quoted one.png\'\n')
    assert jobs._read_list(str(listing), [0]) == [
        (str(tmp_path / "my photo.png"), [0, 1, 2]), (str(tmp_path / "my photo.png"), [5, 6]),
        (str(tmp_path / "other photo 2.png"), [0]), (str(tmp_path / "quoted one.png"), [0])]


@pytest.mark.parametrize("text, message", [
    ("a.png 1 2\n", "separate seeds with commas"), ('"a.png 1\n', "close the quotes"), ("a.png x\n", "seed"), ("# none\n", "names no images"),
    ("a.png\nsub/a.jpg\n", "two images named a"),
])
def test_bad_list_files(tmp_path, text, message):
    listing = tmp_path / "job.txt"
    listing.write_text(text)
    with pytest.raises(jobs.JobError, match=message):
        jobs.read_sources(str(listing), [0])


def test_hosts_share_every_pair_once():
    work = [("a.png", [0, 1, 2]), ("b.png", [0]), ("c.png", [4, 5])]
    shares = [jobs.host_jobs(work, i, 4) for i in range(4)]
    pairs = sorted((p, s) for share in shares for p, seeds in share for s in seeds)
    assert pairs == sorted((p, s) for p, seeds in work for s in seeds)
    assert shares[0] == [("a.png", [0]), ("c.png", [4])]


def test_many_sources_share_out_in_linear_time(tmp_path):
    """20,000 sources (60,000 pairs) over 8 hosts: about 0.1 s when linear; the quadratic pairing this
    replaced took 0.9 s for 2,000 sources, so it would take over a minute here."""
    import time

    listing = tmp_path / "job.txt"
    listing.write_text("".join(f"img{i}.png {i % 5 + 1}\n" for i in range(20000)))
    t0 = time.perf_counter()
    work = jobs.read_sources(str(listing), [0])
    shares = [jobs.host_jobs(work, i, 8) for i in range(8)]
    elapsed = time.perf_counter() - t0
    assert elapsed < 5, f"{elapsed:.2f}s to share out 20,000 sources: reading and pairing must be linear"
    pairs = sorted((p, s) for share in shares for p, seeds in share for s in seeds)
    assert pairs == sorted((p, s) for p, seeds in work for s in seeds)
    assert max(sum(map(len, (s for _, s in share))) for share in shares) - \
        min(sum(map(len, (s for _, s in share))) for share in shares) <= 1  # dealt evenly
