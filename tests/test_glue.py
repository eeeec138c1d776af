"""Static check of every chapter's glue: each ``{glue:…}`` key in the text is glued by the
chapter's code, and each glued key is used in its text or read by the scorecard (no dangling or
orphaned numbers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from devbook.book import chapters
from devbook.paths import repo_root
from devbook.scorecard import keys_by_chapter

CHAPTERS = chapters()
ROLE = re.compile(r"\{glue(?::(?:text|md|any|))?\}`([^`:]+)(?::[^`]*)?`")
DIRECTIVE = re.compile(r"^```\{glue(?::figure|:math|:md)?\}\s+(\S+)", re.M)
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.M | re.S)


def _dict_loop_keys(tree: ast.AST) -> dict[str, list[str]]:
    """``{loop variable: keys}`` for loops ``for k, v in d.items()`` over a dict literal ``d``."""
    literal = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
            if len(keys) == len(node.value.keys):
                literal.update({t.id: keys for t in node.targets if isinstance(t, ast.Name)})
    loops = {}
    for node in ast.walk(tree):
        it = getattr(node, "iter", None)
        if (
            isinstance(node, ast.For)
            and isinstance(it, ast.Call)
            and getattr(it.func, "attr", "") == "items"
            and isinstance(it.func.value, ast.Name)
            and it.func.value.id in literal
            and isinstance(node.target, ast.Tuple)
            and isinstance(node.target.elts[0], ast.Name)
        ):
            loops[node.target.elts[0].id] = literal[it.func.value.id]
    return loops


def glued_patterns(code: str) -> list[re.Pattern[str]]:
    """Regexes of the keys passed to ``glue(...)`` (f-string parts match any text; a loop over
    a dict literal's items contributes the dict's keys)."""
    tree = ast.parse(code)
    loops = _dict_loop_keys(tree)
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "glue" and node.args):
            continue
        key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            out.append(re.compile(re.escape(key.value)))
        elif isinstance(key, ast.JoinedStr):
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in key.values]
            out.append(re.compile("".join(parts)))
        elif isinstance(key, ast.Name) and key.id in loops:
            out.extend(re.compile(re.escape(k)) for k in loops[key.id])
        else:
            raise AssertionError(
                f"glue key must be a literal, an f-string or a dict literal's key: {ast.unparse(key)}"
            )
    return out


def split(text: str) -> tuple[str, str]:
    """(code of all code cells, the markdown text outside them, directives included)."""
    cells = CELL.findall(text)
    cells = ["\n".join(line for line in c.splitlines() if not line.startswith(":")) for c in cells]
    return "\n".join(cells), CELL.sub("", text)


def used_keys(markdown: str) -> set[str]:
    return set(ROLE.findall(markdown)) | set(DIRECTIVE.findall(markdown))


def test_checker_finds_problems() -> None:
    code, md = split(
        "x\n```{code-cell} ipython3\nglue('a', 1)\nglue(f'b-{i}', 2)\n```\n"
        "see {glue:text}`a:.2f` and {glue:}`b-3` and {glue:text}`c`\n"
        "```{glue:md} d\n:format: myst\n```\n"
    )
    pats = glued_patterns(code)
    assert used_keys(md) == {"a", "b-3", "c", "d"}
    assert sorted(k for k in used_keys(md) if not any(p.fullmatch(k) for p in pats)) == ["c", "d"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[str(c) for c in CHAPTERS])
def test_every_glue_key_is_glued_and_used(chapter: Path) -> None:
    code, markdown = split((repo_root() / chapter).read_text(encoding="utf-8"))
    patterns = glued_patterns(code)
    used = used_keys(markdown)
    from_scorecard = keys_by_chapter().get(str(chapter.with_suffix("")), set())
    dangling = sorted(k for k in used if not any(p.fullmatch(k) for p in patterns))
    orphans = sorted(p.pattern for p in patterns if not any(p.fullmatch(k) for k in used | from_scorecard))
    assert not dangling, f"{chapter}: text uses keys no cell glues: {dangling}"
    assert not orphans, f"{chapter}: cells glue keys the text never uses: {orphans}"
