"""`gradguard new-adapter NAME`: scaffold a new adapter in a gradguard checkout, from a description of its tensors.

Writes src/adapters/<name>/ (registry entry, Eigen, torch and CUDA stubs that compile and throw "not implemented:
<name> <what> (<backend>)"), appends <name> to src/adapters/registry.list, and writes the PEFT side in
src/python/gradguard/peft/<name>/ (config, layer, model; works with the stock pip-installed PEFT, save_pretrained /
PeftModel.from_pretrained included). With --peft-fork PATH it also writes the tuner into a PEFT source checkout and
makes the edits that register it there. Nothing existing is overwritten: every target is checked, and every edit
computed, before the first file is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text
from .cpp import cpp_files
from .peft_fork import fork_edits
from .peft_side import peft_files
from .spec import AdapterDesc, ScaffoldError, parse_adapter

__all__ = ["ScaffoldError", "ScaffoldResult", "new_adapter"]

REGISTRY_LIST = "src/adapters/registry.list"
PEFT_DIR = "src/python/gradguard/peft"


@dataclass
class ScaffoldResult:
    adapter: AdapterDesc
    created: list[Path] = field(default_factory=list)  # new files
    edited: list[Path] = field(default_factory=list)   # existing files changed (one line added or a few)

    def render(self, repo: Path) -> str:
        def show(p: Path) -> str:
            try:
                return str(p.relative_to(repo))
            except ValueError:
                return str(p)
        name = self.adapter.name
        lines = [f"new adapter '{name}' (PEFT type {self.adapter.peft_type}, tensors "
                 + ", ".join(f"{t.name} {t.words}" for t in self.adapter.tensors) + ")"]
        lines += [f"  created  {show(p)}" for p in self.created]
        lines += [f"  edited   {show(p)}" for p in self.edited]
        lines += ["next:",
                  f"  1. write the forward and backward in src/adapters/{name}/eigen.hpp and torch.cpp, and "
                  f"_delta_output / _delta_weight in {PEFT_DIR}/{name}/layer.py",
                  "  2. bash .ci/setup   (rebuilds gradguard with the new adapter)",
                  f"  3. gradguard gradcheck {name} --mode full; gradguard compare {name}; bash .ci/test"]
        return "\n".join(lines)


def _registered(list_text: str) -> list[str]:
    names = []
    for line in list_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def new_adapter(name: str, params: list[str] | None = None, repo: str | Path = ".",
                peft_fork: str | Path | None = None, dry_run: bool = False) -> ScaffoldResult:
    desc = parse_adapter(name, params)
    repo = Path(repo).resolve()
    list_path = repo / REGISTRY_LIST
    if not list_path.is_file():
        raise ScaffoldError(f"argument '--repo': expected a gradguard source checkout (with {REGISTRY_LIST}), got "
                            f"'{repo}'")
    list_text = list_path.read_text(encoding="utf-8")
    if desc.name in _registered(list_text):
        raise ScaffoldError(f"argument 'NAME': '{desc.name}' is already in {REGISTRY_LIST}; expected a new name")
    _check_name_is_free(desc, _registered(list_text), repo)

    files = {repo / rel: text for rel, text in cpp_files(desc).items()}
    files.update({repo / rel: text for rel, text in peft_files(desc, f"{PEFT_DIR}/{desc.name}", fork=False).items()})
    edits = {list_path: list_text + ("" if list_text.endswith("\n") or not list_text else "\n") + desc.name + "\n"}
    for folder in (repo / "src" / "adapters" / desc.name, repo / PEFT_DIR / desc.name):
        if folder.exists():
            raise ScaffoldError(f"argument 'NAME': {folder} already exists; the scaffold never overwrites (remove it "
                                "or choose another name)")
    if peft_fork is not None:
        fork_changes, tuner_dir = fork_edits(desc, Path(peft_fork).resolve())
        edits.update(fork_changes)
        fork_pkg = peft_files(desc, str(tuner_dir), fork=True)
        files.update({Path(p): text for p, text in fork_pkg.items()})
        # the shared LoRA-family base travels with the tuner, so the fork does not import gradguard
        files[tuner_dir / "_lowrank.py"] = _fork_base_module()

    result = ScaffoldResult(desc, created=sorted(files), edited=sorted(edits))
    if dry_run:
        return result
    for path, text in files.items():
        write_text(path, text)
    for path, text in edits.items():
        write_text(path, text)
    return result


def _check_name_is_free(desc: AdapterDesc, registered: list[str], repo: Path) -> None:
    """PEFT's own methods keep their names (registering ours under one would replace PEFT's config and tuner for
    every saved adapter of that type), and two adapters never share class names (my_lora_2 and my_lora2 both make
    MyLora2Config)."""
    from peft.utils.peft_types import PeftType

    ours = set(registered) | {p.name for p in (repo / PEFT_DIR).iterdir() if p.is_dir()}
    if desc.peft_type in PeftType.__members__ and desc.name not in ours:
        raise ScaffoldError(f"argument 'NAME': PEFT already has a method '{desc.peft_type}' (PeftType."
                            f"{desc.peft_type}); expected a name PEFT does not use")
    for other in ours:
        if other != desc.name and AdapterDesc(other, ()).camel == desc.camel:
            raise ScaffoldError(f"argument 'NAME': '{desc.name}' gives the class names {desc.camel}Config/"
                                f"{desc.camel}Model, which '{other}' already has; expected another name")


def _fork_base_module() -> str:
    base = Path(__file__).resolve().parent.parent / "peft" / "_common.py"
    text = base.read_text(encoding="utf-8")
    return ('"""Copied from gradguard (gradguard/peft/_common.py) by `gradguard new-adapter --peft-fork`: the '
            'LoRA-family base\nthe scaffolded tuner builds on."""\n' + text.split('"""', 2)[2])
