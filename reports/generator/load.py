"""Reading the JSON inputs and telling their kinds apart by content (never by file name: `gradguard audit --out X`
and the GPU script pick their own names)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH, AUDIT, AUDIT_PEFT, GATE, GPU = "bench", "audit", "audit-peft", "gate", "gpu"

# schema prefix -> (kind, the top-level list or object the renderer needs)
_SCHEMAS = {
    "gradguard.bench-cpu/": (BENCH, "results", list),
    "gradguard.gate/": (GATE, "checks", list),
    "gradguard.gpu-report/": (GPU, None, None),
}
KNOWN_VERSIONS = {BENCH: {"1", "2"}}

EXPECTED = ("a gradguard JSON file: `gradguard bench` (schema gradguard.bench-cpu/N), `gradguard audit` "
            "(\"tool\": \"gradguard audit\"), `gradguard audit-peft` (peft_version + findings), `gradguard gate` "
            "(schema gradguard.gate/N) or the GPU check (schema gradguard.gpu-report/N or lora_fwd_bwd_over_base)")


class ReportInputError(ValueError):
    """An input the report cannot use; the message starts with the file's path. The CLI exits with code 2."""


@dataclass
class Input:
    path: Path
    kind: str
    schema: str  # as written in the file, or a description for files without a schema key
    data: dict

    @property
    def version(self) -> str:
        return self.schema.rpartition("/")[2] if "/" in self.schema else ""


def load_input(path: str | Path) -> Input:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReportInputError(f"{path}: cannot read: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportInputError(f"{path}: not valid JSON ({e}); expected {EXPECTED}") from e
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: the top level is a JSON {type(data).__name__}, expected an object: {EXPECTED}")
    kind, schema, required, required_type = _detect(path, data)
    if required and not isinstance(data.get(required), required_type):
        raise ReportInputError(f"{path}: a {schema} file needs a '{required}' {required_type.__name__}, "
                               f"found {type(data.get(required)).__name__}")
    return Input(path, kind, schema, data)


def _detect(path: Path, data: dict) -> tuple[str, str, str | None, type | None]:
    schema = data.get("schema")
    if isinstance(schema, str):
        for prefix, (kind, required, required_type) in _SCHEMAS.items():
            if schema.startswith(prefix):
                return kind, schema, required, required_type
        raise ReportInputError(f"{path}: unknown schema '{schema}'; expected {EXPECTED}")
    if data.get("tool") == "gradguard audit":
        return AUDIT, "gradguard audit", "adapters", list
    if "tool" in data:
        raise ReportInputError(f"{path}: unknown tool '{data['tool']}'; expected {EXPECTED}")
    if "peft_version" in data and "findings" in data:
        return AUDIT_PEFT, "gradguard audit-peft", "findings", list
    if "lora_fwd_bwd_over_base" in data:
        return GPU, "gradguard GPU check", None, None
    raise ReportInputError(f"{path}: no 'schema' or 'tool' key and not an audit-peft report; expected {EXPECTED}")


@contextmanager
def blame(inp: Input) -> Iterator[None]:
    """Structural surprises deep inside a file (a string where a table was, a missing key the writer always sets)
    become a ReportInputError naming the file, instead of a traceback from the renderer."""
    try:
        yield
    except ReportInputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ReportInputError(f"{inp.path}: malformed {inp.schema} data ({type(e).__name__}: {e})") from e
