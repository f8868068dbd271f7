"""An impossible input size is refused before any work, in one sentence."""

import pytest

from cnnviz_cli.errors import CnnvizError


def test_a_size_beyond_max_pixels_is_refused_before_the_output_folder(sample_dir, tmp_path):
    from cnnviz_cli import api

    with pytest.raises(CnnvizError, match=r"--size 100000 makes inputs of 100000x100000 = "
                       r"10,000,000,000 pixels, more than --max-pixels 64,000,000"):
        api.cam("demo", sample_dir / "star.png", size=100000, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CnnvizError, match="give a smaller --size.$"):  # no --max-pixels there
        api.maximize("demo", size=100000, steps=1)


def test_a_batch_that_cannot_fit_in_memory_is_refused(sample_dir, monkeypatch):
    from cnnviz_cli import api
    from cnnviz_cli.api import limits

    monkeypatch.setattr(limits, "_memory", lambda: 2**30)  # a machine with 1 GiB
    with pytest.raises(CnnvizError, match="a batch of 16 8000x8000 inputs, which alone needs "
                       "11 GiB, more than this machine's 1 GiB"):
        api.cam("demo", sample_dir / "star.png", size=8000)
    api.cam("demo", sample_dir / "star.png", size=64)  # a size that fits runs


def test_the_command_line_says_it_in_one_line(run_cli, sample_dir, tmp_path):
    result = run_cli("cam", "--size", "100000", sample_dir / "star.png", "-o", tmp_path,
                     expect=2)
    assert result.output.count("\n") == 1 and "--max-pixels" in result.output
