"""`gradguard new-adapter NAME --peft-fork PATH`: the edits that make a PEFT source checkout know a new tuner, for
users who keep a fork. Registering a tuner in PEFT (0.21) takes:
  src/peft/utils/peft_types.py   a PeftType member NAME = "NAME" (register_peft_method refuses other names);
  src/peft/tuners/<name>/        the package; its __init__ calls register_peft_method, which fills the config, tuner
                                 and prefix mappings that get_peft_model, save_pretrained and from_pretrained read;
  src/peft/tuners/__init__.py    imports the package (so registration runs with `import peft`) and exports it;
  src/peft/__init__.py           re-exports <Camel>Config / <Camel>Model (`from peft import <Camel>Config`).
Every file is parsed first and every edit computed before anything is written; a file that does not look as expected
is named and nothing changes."""
from __future__ import annotations

import ast
from pathlib import Path

from .spec import AdapterDesc, ScaffoldError


def _parse(path: Path) -> tuple[str, ast.Module]:
    if not path.is_file():
        raise ScaffoldError(f"argument '--peft-fork': expected a PEFT source checkout with {path.name} at {path}, "
                            "but the file does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        return text, ast.parse(text)
    except SyntaxError as e:
        raise ScaffoldError(f"argument '--peft-fork': {path} does not parse as Python ({e.msg}, line {e.lineno})") \
            from None


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _insert_after_line(text: str, line: int, addition: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[:line]) + addition.replace("\n", _newline(text)) + "".join(lines[line:])


def _all_list(tree: ast.Module, path: Path) -> ast.List:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets) \
                and isinstance(node.value, ast.List):
            return node.value
    raise ScaffoldError(f"argument '--peft-fork': expected a literal __all__ = [...] list in {path}")


def _append_to_all(text: str, tree: ast.Module, path: Path, names: list[str]) -> str:
    """Adds the names as the list's last items: one per line before a closing bracket on its own line, else inline
    before it. A comma goes right after the current last item (never at the end of its line, where a comment may be)."""
    lst = _all_list(tree, path)
    lines = text.splitlines(keepends=True)
    nl = _newline(text)
    close_line, close_col = lst.end_lineno - 1, lst.end_col_offset - 1  # the "]"
    last = lst.elts[-1] if lst.elts else None
    def offset(line: int, col: int) -> int:  # (0-based line, column) -> position in text
        return sum(len(x) for x in lines[:line]) + col

    between = text[offset(last.end_lineno - 1, last.end_col_offset):offset(close_line, close_col)] if last else ""
    needs_comma = last is not None and "," not in between.split("#")[0]
    if not lines[close_line][:close_col].strip():  # "]" alone on its line
        indent = " " * (last.col_offset if last is not None and last.lineno != lst.lineno else 4)
        lines[close_line] = "".join(f'{indent}"{n}",{nl}' for n in names) + lines[close_line]
    else:
        row = lines[close_line]
        lines[close_line] = row[:close_col] + ("" if last is None else " ") + ", ".join(f'"{n}"' for n in names) \
            + row[close_col:]
    if needs_comma:  # after the last item itself; its line was not changed above unless it is the "]" line
        row = lines[last.end_lineno - 1]
        lines[last.end_lineno - 1] = row[:last.end_col_offset] + "," + row[last.end_col_offset:]
    return "".join(lines)


def fork_edits(desc: AdapterDesc, fork: Path) -> tuple[dict[Path, str], Path]:
    """(path -> new text of each existing PEFT file to change, the tuner package folder to create)."""
    src = fork / "src" / "peft"
    if not src.is_dir():
        raise ScaffoldError(f"argument '--peft-fork': expected a PEFT source checkout (with src/peft/), got '{fork}'")
    tuner_dir = src / "tuners" / desc.name
    if tuner_dir.exists():
        raise ScaffoldError(f"argument '--peft-fork': {tuner_dir} already exists; the scaffold never overwrites")
    edits: dict[Path, str] = {}

    types_path = src / "utils" / "peft_types.py"
    text, tree = _parse(types_path)
    enum = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PeftType"), None)
    if enum is None:
        raise ScaffoldError(f"argument '--peft-fork': expected class PeftType in {types_path}")
    members = [n for n in enum.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)]
    if any(m.targets[0].id == desc.peft_type for m in members):
        raise ScaffoldError(f"argument '--peft-fork': PeftType.{desc.peft_type} already exists in {types_path}")
    if not members:
        raise ScaffoldError(f"argument '--peft-fork': expected NAME = \"NAME\" members in PeftType in {types_path}")
    edits[types_path] = _insert_after_line(text, members[-1].end_lineno,
                                           f'    {desc.peft_type} = "{desc.peft_type}"\n')

    exported = [f"{desc.camel}Config", f"{desc.camel}Model"]
    tuners_init = src / "tuners" / "__init__.py"
    text, tree = _parse(tuners_init)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1]
    if not imports:
        raise ScaffoldError(f"argument '--peft-fork': expected `from .<tuner> import ...` lines in {tuners_init}")
    text = _insert_after_line(text, imports[-1].end_lineno, f"from .{desc.name} import {', '.join(exported)}\n")
    edits[tuners_init] = _append_to_all(text, ast.parse(text), tuners_init, exported)

    peft_init = src / "__init__.py"
    text, tree = _parse(peft_init)
    from_tuners = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module == "tuners"]
    if not from_tuners:
        raise ScaffoldError(f"argument '--peft-fork': expected `from .tuners import (...)` in {peft_init}")
    text = _insert_after_line(text, from_tuners[-1].end_lineno, f"from .tuners import {', '.join(exported)}\n")
    edits[peft_init] = _append_to_all(text, ast.parse(text), peft_init, exported)
    for path, new in edits.items():  # an edit that breaks a file is a bug here, never the user's to find
        ast.parse(new, filename=str(path))
    return edits, tuner_dir
