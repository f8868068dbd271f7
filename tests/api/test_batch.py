"""Batch runs: streaming, background writes, resume, fail-fast, shards, interrupts, the report."""

import contextlib
import json
import os
import signal
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnviz_cli.api.session import Session
from cnnviz_cli.api.tables import IMAGES, OUTPUT_OPTIONS, RUN
from cnnviz_cli.cli.common import PRINTING, table_options
from cnnviz_cli.options import Table

image_options = table_options(IMAGES, *RUN)


def output_options(function):
    function = table_options(*OUTPUT_OPTIONS)(function)
    function.__click_params__ += PRINTING  # --json and -q
    return function


class FixedSize:
    """What `Session` asks of a resolved model."""

    channels = 3
    runtime = None  # no device chosen: the work runs where TensorFlow puts it

    def image_size(self, size):
        return (8, 8)

    def geometry(self, size, resize="stretch"):
        from cnnviz_cli.models.geometry import Geometry

        return Geometry((8, 8), 8)

    def describe(self):
        return {"source": "fixed"}


@contextlib.contextmanager
def session_of(options: dict):
    """A Session over the command's images and run options; exit 1 when inputs failed."""
    run = Table("probe", RUN).settle({option.name: options[option.name] for option in RUN})
    kept = {"images": list(options["images"]), **run}
    with Session("probe", FixedSize(), kept, "cnnviz probe", options["out"]) as session:
        yield session, (lambda: session.batches(options["images"], {"size": None, **run}))
        session.finish()
    if session.failures:
        raise click.exceptions.Exit(1)


@click.command()
@image_options
@output_options
@click.pass_context
def probe(ctx: click.Context, **options) -> None:
    """Records the batches a command sees (and writes one small file per image)."""
    with session_of(options) as (session, batches):
        for batch in batches():
            ctx.obj["batches"].append([image.key for image in batch])
            for image in batch:
                session.outputs.save_png(f"{image.key}/probe.png", image.resized,
                                         {"input": image.name})


def run_probe(*args, expect: int = 0) -> list[list[str]]:
    seen: list[list[str]] = []
    result = CliRunner().invoke(probe, [str(a) for a in args], obj={"batches": seen, "quiet": True})
    assert result.exit_code == expect, result.output
    return seen


def write_images(folder: Path, count: int, broken: tuple[int, ...] = (), size: int = 12) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    names = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        if index in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        else:
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        names.append(path.stem)
    return names


def activations_args(model_file: Path, images: Path, out: Path, max_channels: int = 4) -> list:
    return ["activations", images, "-m", model_file, "--preprocess", "unit", "--size", "16",
            "-l", "conv", "--max-channels", str(max_channels), "-o", out]


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def wait_for_pictures(folder: Path, images: int, seconds: float) -> None:
    """Wait until the run wrote pictures of `images` images (its first manifest comes before
    any, so waiting for it would not do)."""
    deadline = time.monotonic() + seconds
    while len(set(folder.glob("*/*.png"))) < 2 * images and time.monotonic() < deadline:
        time.sleep(0.01)


def test_stream_keeps_order_and_full_batches_with_bounded_read_ahead(tmp_path, monkeypatch):
    import cnnviz_cli.io.images as images

    names = write_images(tmp_path / "in", 23, broken=(2, 9))
    decoded, threads = [], set()
    original = images.load_image

    def load(path, *args):
        threads.add(threading.current_thread().name)
        decoded.append(path)
        return original(path, *args)

    monkeypatch.setattr(images, "load_image", load)
    seen: list[list[str]] = []
    consumed_at_batch = []

    @click.command()
    @image_options
    @output_options
    @click.pass_context
    def watch(ctx, **options):
        with session_of(options) as (_session, batches):
            for batch in batches():
                consumed_at_batch.append(len(decoded) - sum(map(len, seen)) - len(batch))
                seen.append([image.key for image in batch])

    result = CliRunner().invoke(watch, [str(tmp_path / "in"), "--batch-size", "4", "-q", "-o",
                                        str(tmp_path / "out")], obj={})
    assert result.exit_code == 1  # two unreadable files, listed at the end
    good = [name for index, name in enumerate(names) if index not in (2, 9)]
    assert [key for batch in seen for key in batch] == good
    assert [len(batch) for batch in seen] == [4, 4, 4, 4, 4, 1]
    assert "MainThread" not in threads
    assert max(consumed_at_batch) <= 2 * 4 + 2 + 4  # read-ahead bound (plus failures, workers)
    manifest = manifest_of(tmp_path / "out")
    assert [Path(f["input"]).stem for f in manifest["failures"]] == ["img002", "img009"]


@pytest.mark.parametrize("count, shards", [(10, 3), (7, 7), (3, 5)])
def test_shards_partition_the_inputs(tmp_path, count, shards):
    names = write_images(tmp_path / "in", count)
    parts = [
        {key for batch in run_probe(tmp_path / "in", "--shard", f"{k}/{shards}", "-o",
                                    tmp_path / f"s{k}") for key in batch}
        for k in range(1, shards + 1)
    ]
    assert set().union(*parts) == set(names)
    assert sum(map(len, parts)) == count  # disjoint
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert parts[0] == {key for batch in run_probe(tmp_path / "in", "--shard", f"1/{shards}",
                                                    "-o", tmp_path / "again") for key in batch}


@pytest.mark.parametrize("spec", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_bad_shard_is_a_usage_error(tmp_path, spec):
    from cnnviz_cli.cli import cli

    result = CliRunner().invoke(cli, ["activations", str(tmp_path), "--shard", spec])
    assert result.exit_code == 2 and "K/N" in result.output


def test_fail_fast_stops_at_first_bad_input(tmp_path):
    write_images(tmp_path / "in", 5, broken=(1,))
    seen = run_probe(tmp_path / "in", "--fail-fast", "--batch-size", "1", "-o", tmp_path / "out",
                     expect=1)
    assert seen == [["img000"]]
    manifest = manifest_of(tmp_path / "out")
    assert [Path(f["input"]).name for f in manifest["failures"]] == ["img001.png"]
    assert [record["file"] for record in manifest["outputs"]] == ["img000/probe.png"]
    assert not (tmp_path / "out" / "img002").exists()
    assert len(run_probe(tmp_path / "in", "--batch-size", "1", "-o", tmp_path / "all",
                         expect=1)) == 4  # by default the rest is done


def test_skip_existing_recomputes_nothing_and_resumes_the_rest(tmp_path, run_cli, small_model_file):
    write_images(tmp_path / "in", 5, size=20)
    out = tmp_path / "out"
    run_cli(*activations_args(small_model_file, tmp_path / "in", out), "-q")
    first = manifest_of(out)
    stamps = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in first["outputs"]}
    assert len(stamps) == 10 and len(first["inputs"]) == 5

    run_cli(*activations_args(small_model_file, tmp_path / "in", out), "-q", "--skip-existing")
    second = manifest_of(out)
    assert {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in second["outputs"]} == stamps
    assert second["inputs"] == first["inputs"]

    (out / "img003" / "activations-conv.png").unlink()
    run_cli(*activations_args(small_model_file, tmp_path / "in", out), "-q", "--skip-existing")
    third = manifest_of(out)
    changed = {f for f in stamps if (out / f).stat().st_mtime_ns != stamps.get(f)}
    assert changed == {"img003/activations-conv.png", "img003/activations-conv-overlay.png"}
    assert sorted(r["file"] for r in third["outputs"]) == sorted(stamps)

    result = run_cli(*activations_args(small_model_file, tmp_path / "in", out, max_channels=2),
                     "--skip-existing", expect=2)
    assert "different max_channels" in result.output


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and "src" in attrs:  # the full-size viewer has none until opened
            self.sources.append(unquote(attrs["src"]))
        if tag in ("link", "iframe") or (tag == "script" and "src" in attrs):
            self.external.append(tag)


def test_report_merges_shards_into_one_page(tmp_path, run_cli, small_model_file):
    write_images(tmp_path / "in", 5, size=20)
    odd = tmp_path / "in" / "odd name & 'quote' #1.png"  # escaped in HTML and in URLs
    odd.write_bytes((tmp_path / "in" / "img001.png").read_bytes())
    for k in (1, 2):
        run_cli(*activations_args(small_model_file, tmp_path / "in", tmp_path / "jobs" / f"s{k}"),
                "-q", "--shard", f"{k}/2")
    run_cli("-q", "report", tmp_path / "jobs" / "s1", tmp_path / "jobs" / "s2")
    merged = manifest_of(tmp_path / "jobs")
    shards = [manifest_of(tmp_path / "jobs" / f"s{k}") for k in (1, 2)]
    assert merged["command"] == "report" and [r["folder"] for r in merged["runs"]] == ["s1", "s2"]
    assert len(merged["outputs"]) == sum(len(s["outputs"]) for s in shards) == 12
    assert len(merged["inputs"]) == 6
    assert all((tmp_path / "jobs" / r["file"]).is_file() for r in merged["outputs"])

    page = ImageSources()
    page.feed((tmp_path / "jobs" / "index.html").read_text())
    assert sorted(page.sources) == sorted(r["file"] for r in merged["outputs"])
    assert page.external == []
    text = (tmp_path / "jobs" / "index.html").read_text()
    assert "http://" not in text and "https://" not in text

    own = ImageSources()  # each run's own page shows its own files
    own.feed((tmp_path / "jobs" / "s1" / "index.html").read_text())
    assert sorted(own.sources) == sorted(r["file"] for r in shards[0]["outputs"])

    result = run_cli("report", tmp_path / "jobs" / "s1", "-o", tmp_path / "jobs" / "s2", expect=2)
    assert "belongs to a cnnviz run" in result.output


def test_report_needs_a_manifest(run_cli, tmp_path):
    result = run_cli("report", tmp_path, expect=2)
    assert "No manifest.json" in result.output


def test_sigint_in_process_exits_130_and_keeps_what_finished(tmp_path, run_cli, small_model_file):
    write_images(tmp_path / "in", 60, size=16)
    out = tmp_path / "out"

    def interrupt_after_first_manifest():
        wait_for_pictures(out, 3, 60)
        os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    threading.Thread(target=interrupt_after_first_manifest, daemon=True).start()
    args = activations_args(small_model_file, tmp_path / "in", out)
    result = run_cli(*args, "--batch-size", "2", expect=130)
    assert "Interrupted" in result.output
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    check_interrupted_folder(out, total=60)


def check_interrupted_folder(out: Path, total: int) -> None:
    manifest = manifest_of(out)  # valid JSON
    files = {r["file"] for r in manifest["outputs"]}
    assert files and all((out / f).is_file() for f in files)
    assert not list(out.rglob("*.tmp"))
    assert 0 < len(manifest["inputs"]) < total
    for item in manifest["inputs"]:  # a finished input has all its files
        assert {f"{item['key']}/activations-conv.png",
                f"{item['key']}/activations-conv-overlay.png"} <= files


@pytest.mark.slow
def test_sigterm_subprocess_exits_143_then_resume_finishes(
        tmp_path, small_model_file, forks, run_cli):
    write_images(tmp_path / "in", 150, size=16)
    out = tmp_path / "out"
    arguments = activations_args(small_model_file, tmp_path / "in", out)
    process = forks.start("-q", *arguments, "--batch-size", "2")
    wait_for_pictures(out, 3, 120)
    process.send_signal(signal.SIGTERM)
    assert process.wait() == 143, process.stderr
    check_interrupted_folder(out, total=150)

    run_cli("-q", *arguments, "--batch-size", "2", "--skip-existing")  # resumed in-process
    manifest = manifest_of(out)
    assert len(manifest["inputs"]) == 150 and len(manifest["outputs"]) == 300


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [pytest.param(0o022, 0o644, marks=pytest.mark.slow),
                                        (0o077, 0o600)], ids=["022", "077"])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, run_cli, small_model_file, umask,
                                                    mask, mode):
    write_images(tmp_path / "in", 2, size=16)
    umask(mask)
    out, model = tmp_path / "out", ["-m", small_model_file, "--preprocess", "unit", "-l", "conv"]
    run_cli("-q", "cam", tmp_path / "in", *model, "--method", "gradcam,layercam", "--save-npy",
            "-o", out / "cam")
    run_cli("-q", "maximize", *model, "--filter", "0", "--steps", "4", "--gif", "2", "--size",
            "16", "-o", out / "maximize")
    run_cli("-q", "report", out / "cam", out / "maximize")
    files = sorted(path for path in out.rglob("*") if path.is_file())
    assert {path.suffix for path in files} == {".png", ".npy", ".gif", ".json", ".html"}
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in files} == {
        path.name: oct(mode) for path in files}


@pytest.mark.slow  # two cam runs with metrics
def test_report_ranks_the_methods_over_all_shards_of_a_job(tmp_path, run_cli, small_model_file):
    write_images(tmp_path / "in", 5, size=20)
    jobs, methods = tmp_path / "jobs", ["gradcam", "layercam", "eigencam"]
    for k in (1, 2):
        run_cli("-q", "cam", tmp_path / "in", "-m", small_model_file, "--preprocess", "unit",
                "-l", "conv", "--method", ",".join(methods), "--metrics", "--metric-steps", "4",
                "--shard", f"{k}/2", "-o", jobs / f"s{k}")
    run_cli("-q", "report", jobs / "s1", jobs / "s2")
    merged = manifest_of(jobs)
    overlays = [r for r in merged["outputs"] if r["kind"] == "overlay"]
    means = {m: np.mean([[r["deletion_auc"], r["insertion_auc"]] for r in overlays
                         if r["method"] == m], axis=0) for m in methods}
    ranking = merged["metrics"]["faithfulness"]
    assert [row["method"] for row in ranking] == sorted(methods,
                                                        key=lambda m: means[m][0] - means[m][1])
    for row in ranking:
        assert row["maps"] == 5 and row["runs"] == [0, 1]
        assert row["deletion_auc"] == pytest.approx(means[row["method"]][0], rel=1e-6)
        assert row["insertion_auc"] == pytest.approx(means[row["method"]][1], rel=1e-6)
    page = (jobs / "index.html").read_text()
    assert page.count("Faithfulness ranking") == 1  # one job, one ranking (not one per shard)


def test_merging_ranks_each_setup_of_runs_on_its_own():
    from cnnviz_cli.io.manifests import merge_manifests

    def run(steps: int, shard: str, aucs: dict) -> dict:
        outputs = [{"file": f"{method}-{n}.png", "kind": kind, "method": method,
                    "deletion_auc": deletion, "insertion_auc": insertion}
                   for method, pairs in aucs.items()
                   for n, (deletion, insertion) in enumerate(pairs)
                   for kind in ("overlay", "heatmap")]
        options = {"metric_steps": steps, "shard": shard, "out": shard}
        return {"tool": "cnnviz", "command": "cam", "model": {"source": "demo"},
                "outputs": outputs, "options": options, "inputs": [], "failures": [],
                "metrics": {}}

    merged = merge_manifests([
        (run(8, "1/2", {"a": [(0.2, 0.5)], "b": [(0.1, 0.3)]}), "s1"),
        (run(8, "2/2", {"a": [(0.4, 0.5)], "b": [(0.3, 0.9)]}), "s2"),
        (run(4, "1/1", {"a": [(0.1, 0.9)], "b": [(0.5, 0.5)]}), "other"),
    ])
    rows = [(row["runs"], row["rank"], row["method"], row["maps"]) for row in
            merged["metrics"]["faithfulness"]]
    assert rows == [([0, 1], 1, "b", 2), ([0, 1], 2, "a", 2), ([2], 1, "a", 1), ([2], 2, "b", 1)]
    first = merged["metrics"]["faithfulness"][0]
    assert first["deletion_auc"] == pytest.approx(0.2)
    assert first["insertion_auc"] == pytest.approx(0.6)
    assert first["insertion_minus_deletion"] == pytest.approx(0.4)
