"""Every key of every Hydra config in conf/ has a comment line above it (sections included)."""

from __future__ import annotations

import re

from tests.conftest import REPO

KEY = re.compile(r"^\s*[\w.+/@-]+\s*:")


def uncommented_keys(text: str) -> list[str]:
    """Key lines of a YAML file whose previous non-blank line is not a comment.

    List items and defaults aside.
    """
    found, previous = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if (
            KEY.match(line)
            and not stripped.startswith(("#", "- ", "defaults"))
            and not previous.startswith("#")
        ):
            found.append(stripped)
        previous = stripped
    return found


def test_the_checker_finds_a_key_without_a_comment():
    assert uncommented_keys("# a\na: 1\nb:\n  # c\n  c: 2\n") == ["b:"]


def test_every_config_key_has_a_comment_above_it():
    missing = {
        str(p.relative_to(REPO)): keys
        for p in sorted((REPO / "conf").rglob("*.yaml"))
        if (keys := uncommented_keys(p.read_text()))
    }
    assert missing == {}
