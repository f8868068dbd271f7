"""Options that say what a model's head is and what of it to explain (cam, maximize).

Whether they fit the head is checked by the API (cnnviz_cli.models.heads): one message for
the shell and for Python.
"""

from pathlib import Path

import click

from cnnviz_cli.cli.common import compose
from cnnviz_cli.specs import DIRECTIONS, TASKS

head_options = compose(
    click.option(
        "--task", type=click.Choice(TASKS),
        help="What the output is [default: from its final activation and shape: softmax "
        "classify, one sigmoid binary, several multilabel, one linear unit regress, "
        "(batch, h, w, classes) segment]; embed needs --reference.",
    ),
    click.option(
        "--direction", type=click.Choice(DIRECTIONS),
        help="A regression head: explain what raises (up) or lowers (down) the output "
        "[default: up].",
    ),
)

cam_head_options = compose(
    head_options,
    click.option(
        "--threshold", type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="P",
        help="A multi-label head: also explain every label of probability >= P (0 < P < 1).",
    ),
    click.option(
        "--reference", multiple=True, type=click.Path(exists=True, path_type=Path),
        help="With --task embed: images (files or folders, repeatable) whose mean embedding "
        "the cosine similarity of each input compares with.",
    ),
)
