"""The committed goldens (fixtures/goldens, written from the pinned PEFT by fixtures/make_goldens.py): they regenerate
byte for byte, the Eigen float64 reference reproduces every one of them within the float64 policy, and the strict C++
reader turns every kind of corrupt file into an InputError naming the file and an offset.

Run: python -m pytest -q tests/python/test_fixtures.py
"""
from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest

import gradguard as gg
from gradguard import _C
from gradguard.bridge import peft_supported
from gradguard.peft_defects import known_peft_defect

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = ROOT / "fixtures" / "goldens"
GOLDEN_FILES = sorted(GOLDENS.glob("*.safetensors"))
METADATA_KEYS = {"gradguard_fixture_version", "adapter", "case", "hp", "peft_version", "torch_version", "seed",
                 "generator"}


def _load_generator():
    spec = importlib.util.spec_from_file_location("gg_make_goldens", ROOT / "fixtures" / "make_goldens.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generator():
    pytest.importorskip("peft")
    return _load_generator()


# --- (a) deterministic regeneration ---------------------------------------------------------------------------------

def test_goldens_are_committed():
    assert GOLDEN_FILES, "fixtures/goldens is empty: run fixtures/make_goldens.py"
    assert sum(p.stat().st_size for p in GOLDEN_FILES) < 200_000


def test_regeneration_is_byte_identical(generator, tmp_path):
    written = generator.generate(tmp_path)
    assert sorted(p.name for p in written) == [p.name for p in GOLDEN_FILES], \
        "the set of goldens changed: rerun fixtures/make_goldens.py and commit"
    differ = [p.name for p in written if p.read_bytes() != (GOLDENS / p.name).read_bytes()]
    assert not differ, f"regenerated goldens differ from the committed ones: {differ}"


def test_check_mode_reports_a_changed_file(generator, tmp_path):
    generator.generate(tmp_path)
    victim = sorted(tmp_path.glob("*.safetensors"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor value
    victim.write_bytes(bytes(data))
    problems = generator.check(tmp_path)
    assert len(problems) == 1 and victim.name in problems[0]
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1


# --- (b) the Eigen float64 reference reproduces PEFT ----------------------------------------------------------------

def test_every_peft_adapter_has_goldens():
    seen = {_C.read_safetensors(str(p))[0]["adapter"] for p in GOLDEN_FILES}
    for name in gg.adapters():
        if peft_supported(name):
            assert name in seen, f"no golden for {name}"


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_eigen_reference_reproduces_peft(path):
    meta, t = _C.read_safetensors(str(path))
    assert METADATA_KEYS <= set(meta), f"{path}: metadata lacks {METADATA_KEYS - set(meta)}"
    assert meta["gradguard_fixture_version"] == "1"
    assert meta["generator"] == "fixtures/make_goldens.py"
    assert path.name == f"{meta['adapter']}-{meta['case']}.safetensors"
    name, hp = meta["adapter"], json.loads(meta["hp"])
    d_out, d_in = t["weight"].shape
    shapes = _C.tensor_shapes(name, d_in, d_out, hp)
    # The C++ reader's binding hands 0-d tensors back as (1,); the registry shape is what the file declares.
    tensors = {n: t[n].reshape(s) for n, s in shapes.items()}
    ref = _C.run_backend(name, "eigen", "float64", t["x"], tensors, t["dy"], hp)
    trainable = [s["name"] for s in gg.info(name)["tensors"] if s["role"] == "trainable" and s["name"] in shapes]
    expected = {"y": "y", "dx": "grad.x", **{"d " + n: "grad." + n for n in trainable}}
    assert set(ref) == set(expected)
    p = _C.policy("float64")
    # The goldens are PEFT's own float64 outputs: the float64 policy, unless the registry declares (with its reason) a
    # known PEFT deviation under the check "peft" (LoHa's float32 scaling scalar).
    over = next((o for o in gg.info(name)["tolerance_overrides"] if o["check"] == "peft"), None)
    atol, rtol = (over["atol"], over["rtol"]) if over else (p["f64_atol"], p["f64_rtol"])
    failures, fixed = [], []
    for key, golden_key in expected.items():
        s = _C.compare_to_reference(golden_key, ref[key], t[golden_key].reshape(ref[key].shape), None, 0.0,
                                    atol, rtol)
        # A confirmed PEFT defect must still show in PEFT's numbers: when it no longer does, PEFT fixed it and the
        # entry in gradguard.peft_defects goes (and this golden is regenerated).
        defect = known_peft_defect(name, key, hp)
        if defect and s["ok"]:
            fixed.append(f"{golden_key}: {defect}")
        if not s["ok"] and not defect:
            failures.append(f"{golden_key}: max_abs {s['max_abs']:.3e} max_rel {s['max_rel']:.3e} at {s['worst_index']}")
    assert not failures, f"{path.name} ({meta['hp']}): eigen float64 disagrees with PEFT {meta['peft_version']}: {failures}"
    assert not fixed, f"{path.name}: PEFT {meta['peft_version']} no longer shows a known defect: {fixed}"


# --- (c) corrupt files are InputErrors naming the file and an offset -------------------------------------------------

def _corruptions(data: bytes) -> dict[str, bytes]:
    header_len = struct.unpack("<Q", data[:8])[0]
    out = {
        "truncated_in_length": data[:5],
        "truncated_in_header": data[:8 + header_len // 2],
        "truncated_in_data": data[:-5],
        "empty": b"",
    }
    for i, mask in ((0, 0xFF), (1, 0x10), (4, 0xFF), (7, 0x80)):
        flipped = bytearray(data)
        flipped[i] ^= mask
        out[f"header_length_byte{i}_flipped"] = bytes(flipped)
    garbage = b"{not json at all: [" + b" " * 8
    out["garbage_json"] = struct.pack("<Q", len(garbage)) + garbage + b"\0" * 16
    out["garbage_in_header"] = data[:8] + b"#" * header_len + data[8 + header_len:]
    return out


CORRUPTIONS = sorted(_corruptions(GOLDEN_FILES[0].read_bytes())) if GOLDEN_FILES else []


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_file_is_an_input_error(kind, tmp_path):
    source = GOLDEN_FILES[0]
    bad = tmp_path / f"{kind}.safetensors"
    bad.write_bytes(_corruptions(source.read_bytes())[kind])
    with pytest.raises(gg.InputError) as e:
        _C.read_safetensors(str(bad))
    msg = str(e.value)
    assert str(bad) in msg, msg
    assert "offset" in msg, msg


def test_missing_file_is_an_input_error(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(gg.InputError, match="nope.safetensors"):
        _C.read_safetensors(str(missing))
