"""Options that say what a model's head is and what of it to explain (cam, maximize).

Whether they fit the head is checked by the API (cnnviz_cli.models.heads): one message for
the shell and for Python.
"""

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
