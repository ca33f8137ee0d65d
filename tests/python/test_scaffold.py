"""`gradguard new-adapter`: what it writes, what it refuses, and the user's path from the scaffold to a checked
adapter — the C++ stubs compile and fail by name, the filled-in maths pass finite differences and a planted wrong
backward does not; the PEFT side works with the stock PEFT (a Trainer trains it under GradGuardCallback, save/load
round trip); --peft-fork edits a PEFT source checkout so that `from peft import <Name>Config` works without gradguard.
Every scaffold is written into a copy of the repository's src/ in a temporary folder."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import gradguard
import pytest
from gradguard.cli import main as cli

from fixtures.scaffold import my_new_lora_fill as fill

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
NAME = "my_new_lora"
ARGS = ["new-adapter", NAME] + [a for p in fill.PARAMS for a in ("--param", p)]


def copy_src(dest: Path) -> Path:
    """The repository's tracked src/ (what the scaffold reads and writes) under dest."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "src"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    for rel in files.split():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def scaffold(tmp_path: Path, *extra: str) -> Path:
    repo = copy_src(tmp_path / "repo")
    assert cli(ARGS + ["--repo", str(repo), *extra]) == 0
    return repo


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- what it writes ------------------------------------------------------------------------------------------------
def test_writes_the_adapter_folder_one_registry_line_and_the_peft_package(tmp_path, capsys):
    repo = scaffold(tmp_path)
    out = capsys.readouterr().out
    written = sorted(str(p.relative_to(repo)) for p in (repo / "src/adapters" / NAME).iterdir())
    assert written == [f"src/adapters/{NAME}/{f}" for f in ("cuda.cpp", "eigen.hpp", "entry.cpp", "torch.cpp")]
    peft = sorted(p.name for p in (repo / "src/python/gradguard/peft" / NAME).iterdir())
    assert peft == ["__init__.py", "config.py", "layer.py", "model.py"]
    before = (ROOT / "src/adapters/registry.list").read_text()
    assert (repo / "src/adapters/registry.list").read_text() == before + NAME + "\n"  # one line, nothing else
    for rel in written + ["src/adapters/registry.list"]:
        assert rel in out
    entry = (repo / f"src/adapters/{NAME}/entry.cpp").read_text()
    assert '"lora_scale", TensorRole::trainable' in entry and "Shape{d.d_out}" in entry
    assert 'lowrank::family_entry("my_new_lora", "MY_NEW_LORA"' in entry
    model = (repo / f"src/python/gradguard/peft/{NAME}/model.py").read_text()
    assert 'prefix: str = "lora_"' in model


def test_refuses_to_overwrite_and_then_writes_nothing(tmp_path, capsys):
    repo = scaffold(tmp_path)
    before = snapshot(repo)
    assert cli(ARGS + ["--repo", str(repo)]) == 2
    assert f"'{NAME}' is already in src/adapters/registry.list" in capsys.readouterr().err
    # the PEFT package alone already there (the registry line and the C++ folder not): still nothing is written
    repo2 = copy_src(tmp_path / "repo2")
    (repo2 / "src/python/gradguard/peft" / NAME).mkdir()
    before2 = snapshot(repo2)
    assert cli(ARGS + ["--repo", str(repo2)]) == 2
    assert "already exists; the scaffold never overwrites" in capsys.readouterr().err
    assert snapshot(repo2) == before2 and snapshot(repo) == before
    assert cli(["new-adapter", "lora", "--repo", str(repo2)]) == 2  # a built-in adapter's name


@pytest.mark.parametrize("argv, message", [
    (["new-adapter", "MyLora"], "argument 'NAME': expected a snake_case adapter name"),
    (["new-adapter", "class"], "argument 'NAME'"),
    (["new-adapter", "x", "--param", "lora_A:r,d_in"], "argument '--param': expected NAME:SHAPE:INIT"),
    (["new-adapter", "x", "--param", "lora_A:r,d_in,d_out:zeros"], "expected at most 2 sizes"),
    (["new-adapter", "x", "--param", "lora_A:r,width:zeros"], "expected sizes d_in, d_out, r or integers from 1"),
    (["new-adapter", "x", "--param", "lora_A:r:kaiming"], "kaiming init needs a 2-D shape"),
    (["new-adapter", "x", "--param", "lora_A:r:xavier"], "expected INIT one of zeros, ones, kaiming, normal"),
    (["new-adapter", "x", "--param", "weight:r:ones"], "'weight' is taken"),
    (["new-adapter", "x", "--param", "a_1:r:ones", "--param", "a_1:r:ones"], "described twice"),
    (["new-adapter", "x", "--param", "gate:r:ones", "--param", "scale:d_out:ones"], "share a prefix ending in '_'"),
    (["new-adapter", "x", "--param", "lora_A:08,r:zeros"], "no leading zero"),
    (["new-adapter", "x", "--param", "lora_A:99999999,r:zeros"], "integers from 1 to"),
    (["new-adapter", "x", "--param", "in_features:r:ones"], "'in_features' is taken"),
    (["new-adapter", "x", "--param", "active_adapter:r:ones"], "'active_adapter' is taken"),
    (["new-adapter", "x", "--param", "x_dropout:r:ones", "--param", "x_A:r,d_in:normal"], "dropout container"),
    (["new-adapter", "float"], "no Python or C++ keyword"),
    (["new-adapter", "osf"], "PEFT already has a method 'OSF'"),
    (["new-adapter", "weight__lora"], "which 'weight_lora' already has"),
])
def test_bad_descriptions_name_the_argument(tmp_path, capsys, argv, message):
    repo = copy_src(tmp_path / "repo")
    before = snapshot(repo)
    assert cli(argv + ["--repo", str(repo)]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(repo) == before


def test_not_a_checkout_is_named(tmp_path, capsys):
    assert cli(ARGS + ["--repo", str(tmp_path)]) == 2
    assert "argument '--repo': expected a gradguard source checkout" in capsys.readouterr().err


def test_dry_run_lists_and_writes_nothing(tmp_path, capsys):
    repo = copy_src(tmp_path / "repo")
    before = snapshot(repo)
    assert cli(ARGS + ["--repo", str(repo), "--dry-run"]) == 0
    assert "dry run, nothing written" in capsys.readouterr().out
    assert snapshot(repo) == before


@pytest.mark.parametrize("name", [NAME, "gated_lora"])  # class names sorting after and before `Linear` (isort)
def test_generated_python_is_clean_for_the_linter(tmp_path, name):
    repo = copy_src(tmp_path / "repo")
    assert cli(["new-adapter", name, "--repo", str(repo)] + ARGS[2:]) == 0
    pkg = repo / "src/python/gradguard/peft" / name
    ruff = [sys.executable, "-m", "ruff"]  # installed by .ci/setup (.ci/requirements-extra.txt)
    run = subprocess.run([*ruff, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(pkg)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # the linter must be able to fail: an unused import planted into the generated layer
    layer = pkg / "layer.py"
    layer.write_text("import os\n" + layer.read_text())
    assert subprocess.run([*ruff, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(layer)],
                          capture_output=True, text=True).returncode == 1


def test_readme_shows_the_code_the_tests_fill_in():
    readme = (ROOT / "README.md").read_text()
    assert "gradguard new-adapter my_new_lora" in readme
    for pairs in fill.FILL.values():
        for _, new in pairs:
            assert new in readme, new


# --- the PEFT side, on the stock PEFT --------------------------------------------------------------------------------
PEFT_SCRIPT = r'''
import sys, json, warnings
import torch
import gradguard.peft as ggpeft
ggpeft.__path__.append(sys.argv[1])           # the scaffolded package, as if it were in gradguard's tree
import importlib
pkg = importlib.import_module("gradguard.peft.my_new_lora")
from peft import PeftModel, get_peft_model
from gradguard.models import tiny_llama, llama_batch
from gradguard.flow import check
mode, out = sys.argv[2], sys.argv[3]
TARGETS = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(tiny_llama(0), pkg.MyNewLoraConfig(r=4, target_modules=TARGETS))
names = sorted(n for n, p in model.named_parameters() if p.requires_grad)
result = {"trainable": names, "peft_type": model.peft_config["default"].peft_type.value}
if mode == "stub":
    try:
        model(**llama_batch(0))
    except NotImplementedError as e:
        result["error"] = str(e)
else:
    from transformers import Trainer, TrainingArguments
    sys.path.insert(0, sys.argv[4])
    from trainer_helpers import CopyTask
    from gradguard.integrations import GradGuardCallback
    cb = GradGuardCallback(every_n_steps=10)
    args = TrainingArguments(output_dir=out + "/run", max_steps=30, per_device_train_batch_size=8, learning_rate=3e-2,
                             logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                             seed=0, lr_scheduler_type="constant")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = Trainer(model=model, args=args, train_dataset=CopyTask(), callbacks=[cb])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        trainer.train()
    result["loss"] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result["unchanged"] = [n for n, p in model.named_parameters()
                           if p.requires_grad and torch.equal(p.detach(), before[n])]
    result["reports_ok"] = [r.ok for _, r in cb.reports]
    model.eval()
    batch = llama_batch(1)
    with torch.no_grad():
        y = model(**batch).logits
    model.save_pretrained(out + "/saved")
    loaded = PeftModel.from_pretrained(tiny_llama(0), out + "/saved").eval()
    with torch.no_grad():
        result["reload_max_diff"] = (loaded(**batch).logits - y).abs().max().item()
        merged = loaded.merge_and_unload()
        result["merge_max_diff"] = (merged(**batch).logits - y).abs().max().item()
    result["flow_ok"] = check(get_peft_model(tiny_llama(0), pkg.MyNewLoraConfig(r=4, target_modules=TARGETS)),
                              **llama_batch(0)).ok
json.dump(result, open(out + "/result.json", "w"))
'''


def run_peft_script(tmp_path: Path, repo: Path, mode: str) -> dict:
    script = tmp_path / "peft_side.py"
    script.write_text(PEFT_SCRIPT)
    out = tmp_path / f"out_{mode}"
    out.mkdir()
    run = subprocess.run([sys.executable, str(script), str(repo / "src/python/gradguard/peft"), mode, str(out),
                          str(Path(__file__).parent)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def test_peft_side_stub_names_itself_then_trains_saves_and_loads(tmp_path):
    repo = scaffold(tmp_path)
    stub = run_peft_script(tmp_path, repo, "stub")
    assert stub["peft_type"] == "MY_NEW_LORA"
    assert {n.rsplit(".", 2)[-2] for n in stub["trainable"]} == {"lora_A", "lora_B", "lora_scale"}
    assert len(stub["trainable"]) == 3 * 10  # 3 tensors x (5 targets x 2 layers)
    assert stub["error"].startswith("not implemented: my_new_lora forward (peft): write _delta_output in")
    fill.fill(repo, only=("src/python/gradguard/peft/my_new_lora/layer.py",))
    done = run_peft_script(tmp_path, repo, "filled")
    loss = done["loss"]
    assert len(loss) == 30 and sum(loss[-5:]) / 5 < sum(loss[:5]) / 5 - 0.25, loss  # as test_integrations' runs
    assert done["unchanged"] == []                     # every adapter tensor trained
    assert done["reports_ok"] == [True, True, True, True] and done["flow_ok"]
    assert done["reload_max_diff"] == 0.0              # save_pretrained -> PeftModel.from_pretrained: identical
    assert done["merge_max_diff"] < 1e-5               # _delta_weight agrees with _delta_output (float32 rounding)


# --- the C++ side: compile against the built core, fail by name, pass when filled, fail on a planted bug ------------
def _compile_command(source_suffix: str) -> list[str] | None:
    db = BUILD / "compile_commands.json"
    if not db.is_file():
        return None
    for entry in json.loads(db.read_text()):
        cmd = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
        output = cmd[cmd.index("-o") + 1] if "-o" in cmd else ""
        if entry["file"].endswith(source_suffix) and ("gg_core.dir" in output or "gg_torch.dir" in output):
            return cmd
    return None


def _retarget(cmd: list[str], repo: Path, source: Path, output: Path, extra: list[str]) -> list[str]:
    """The build's own command for a sibling file, aimed at the scaffolded copy: its src/ first on the include path,
    the given source and output, every flag kept (-O3 with -Werror: GCC's optimiser issues warnings that a lighter
    compile never sees, and the user's build is this one)."""
    out, i = [], 0
    while i < len(cmd):
        if cmd[i] in ("-o", "-c"):
            i += 2
            continue
        out.append(cmd[i])
        i += 1
    return [out[0], f"-I{repo / 'src'}", *out[1:], *extra, "-c", str(source), "-o", str(output)]


def _compile_all(commands: list[list[str]]) -> None:
    """Two at a time (the machine's cores); each must succeed, its compiler output shown when it does not."""
    for start in range(0, len(commands), 2):
        running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for c in commands[start:start + 2]]
        for c, p in zip(commands[start:start + 2], running):
            output = p.communicate()[0]
            assert p.returncode == 0, f"{' '.join(c)}\n{output[-4000:]}"


def _build_and_run(repo: Path, tmp: Path, core_cmd: list[str], driver_obj: Path) -> str:
    entry_obj = tmp / "entry.o"
    _compile_all([_retarget(core_cmd, repo, repo / f"src/adapters/{NAME}/entry.cpp", entry_obj, [])])
    exe = tmp / "driver"
    subprocess.run([core_cmd[0], str(driver_obj), str(entry_obj), str(BUILD / "libgg_core.a"), "-o", str(exe)],
                   check=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    return f"rc={run.returncode}\n{run.stdout}{run.stderr}"


def test_cpp_stubs_compile_and_fail_by_name_then_the_maths_pass_gradcheck(tmp_path):
    core_cmd = _compile_command("src/adapters/lora/entry.cpp")
    if core_cmd is None or not (BUILD / "libgg_core.a").is_file():
        pytest.fail("build/compile_commands.json and build/libgg_core.a come from `bash .ci/setup`; run it first")
    repo = scaffold(tmp_path)
    driver_obj = tmp_path / "driver.o"
    _compile_all([_retarget(core_cmd, repo, ROOT / "fixtures/scaffold/driver.cpp", driver_obj,
                            [f"-I{ROOT}", f"-DGG_SCAFFOLD_INFO={NAME}_info"])])
    out = _build_and_run(repo, tmp_path, core_cmd, driver_obj)
    assert out.startswith("rc=1") and "error: not implemented: my_new_lora forward (eigen)" in out, out
    eigen = repo / f"src/adapters/{NAME}/eigen.hpp"
    (old_fwd, new_fwd), (old_bwd, new_bwd) = fill.FILL[f"src/adapters/{NAME}/eigen.hpp"]
    eigen.write_text(eigen.read_text().replace(old_fwd, new_fwd))  # the forward alone: the backward is now missing
    out = _build_and_run(repo, tmp_path, core_cmd, driver_obj)
    assert out.startswith("rc=1") and "error: not implemented: my_new_lora backward (eigen)" in out, out
    eigen.write_text(eigen.read_text().replace(old_bwd, new_bwd))
    fill.fill(repo, only=(f"src/adapters/{NAME}/entry.cpp",))
    out = _build_and_run(repo, tmp_path, core_cmd, driver_obj)
    assert out.startswith("rc=0") and out.rstrip().endswith("PASS"), out
    assert out.count(" ok") == 2 * 2 * 4  # modes x shapes x inputs (x, lora_A, lora_B, lora_scale)
    fill.plant(repo)
    out = _build_and_run(repo, tmp_path, core_cmd, driver_obj)
    assert out.startswith("rc=1") and re.search(r"lora_scale budget \S+ FAIL", out), out
    assert not re.search(r"lora_(A|B) budget \S+ FAIL", out), out  # the planted error is in m's gradient only


def test_cpp_torch_and_cuda_stubs_compile_and_the_filled_torch_backend_too(tmp_path):
    torch_cmd = _compile_command("src/adapters/lora/torch.cpp")
    if torch_cmd is None:
        pytest.fail("build/compile_commands.json comes from `bash .ci/setup`; run it first")
    repo = scaffold(tmp_path)
    filled = copy_src(tmp_path / "filled")
    shutil.copytree(repo / "src/adapters" / NAME, filled / "src/adapters" / NAME)
    fill.fill(filled, only=(f"src/adapters/{NAME}/torch.cpp",))
    _compile_all([_retarget(torch_cmd, root, root / f"src/adapters/{NAME}/{file}", tmp_path / f"{root.name}-{file}.o",
                            []) for root, file in ((repo, "torch.cpp"), (repo, "cuda.cpp"), (filled, "torch.cpp"))])


# --- --peft-fork: a PEFT source checkout learns the tuner --------------------------------------------------------
FORK_SCRIPT = r'''
import sys, json, torch
import peft
assert peft.__file__.startswith(sys.argv[1]), peft.__file__
from peft import MyNewLoraConfig, MyNewLoraModel, PeftModel, get_peft_model
from peft.utils.peft_types import PeftType
from transformers import LlamaConfig, LlamaForCausalLM

def tiny_llama():  # gradguard's tiny model, rebuilt here: this run must not import gradguard at all
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                        max_position_embeddings=64)).eval()

def llama_batch(seed):
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "labels": ids.clone()}

model = get_peft_model(tiny_llama(), MyNewLoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
# Adam: any non-zero gradient moves a parameter by ~lr (step 1 moves only B: A's and m's gradients are zero while B = 0)
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
for _ in range(2):
    opt.zero_grad(); model(**llama_batch(0)).loss.backward(); opt.step()
unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])]
model.eval(); b = llama_batch(1)
with torch.no_grad():
    y = model(**b).logits
model.save_pretrained(sys.argv[2])
with torch.no_grad():
    diff = (PeftModel.from_pretrained(tiny_llama(), sys.argv[2])(**b).logits - y).abs().max().item()
print(json.dumps({"type": PeftType.MY_NEW_LORA.value, "n_trainable": len(before), "unchanged": unchanged,
                  "diff": diff, "gradguard_imported": any(m.startswith("gradguard") for m in sys.modules)}))
'''


def test_peft_fork_is_edited_so_that_stock_imports_find_the_tuner(tmp_path, capsys):
    import peft

    fork = tmp_path / "peft"
    shutil.copytree(Path(peft.__file__).parent, fork / "src" / "peft", ignore=shutil.ignore_patterns("__pycache__"))
    scaffold(tmp_path, "--peft-fork", str(fork))
    out = capsys.readouterr().out
    for rel in ("src/peft/utils/peft_types.py", "src/peft/tuners/__init__.py", "src/peft/__init__.py"):
        assert f"edited   {fork / rel}" in out
    tuner = fork / "src/peft/tuners" / NAME
    assert sorted(p.name for p in tuner.iterdir()) == ["__init__.py", "_lowrank.py", "config.py", "layer.py",
                                                       "model.py"]
    assert '    MY_NEW_LORA = "MY_NEW_LORA"\n' in (fork / "src/peft/utils/peft_types.py").read_text()
    layer = tuner / "layer.py"
    text = layer.read_text()
    for what, new in (("forward", fill.PEFT_DELTA_OUTPUT), ("delta weight", fill.PEFT_DELTA_WEIGHT)):
        text, n = re.subn(rf'        raise NotImplementedError\("not implemented: my_new_lora {what} \(peft\)[^)]*\)',
                          lambda m, new=new: new, text)
        assert n == 1
    layer.write_text(text)
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(fork / "src"))
    run = subprocess.run([sys.executable, str(script), str(fork / "src"), str(tmp_path / "saved")], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"type": "MY_NEW_LORA", "n_trainable": 12, "unchanged": [], "diff": 0.0,
                      "gradguard_imported": False}
    # a second scaffold into the same fork refuses before writing anything
    repo2 = copy_src(tmp_path / "repo2")
    before = snapshot(fork)
    assert cli(ARGS + ["--repo", str(repo2), "--peft-fork", str(fork)]) == 2
    assert snapshot(fork) == before
    assert not (repo2 / "src/adapters" / NAME).exists()


def test_peft_fork_that_is_not_a_checkout_is_named(tmp_path, capsys):
    repo = copy_src(tmp_path / "repo")
    assert cli(ARGS + ["--repo", str(repo), "--peft-fork", str(tmp_path / "nowhere")]) == 2
    assert "argument '--peft-fork': expected a PEFT source checkout" in capsys.readouterr().err
    assert not (repo / "src/adapters" / NAME).exists()


def test_the_package_is_importable_from_an_installed_gradguard():
    # the scaffold ships with the package (gradguard new-adapter works outside a checkout's Python path too)
    assert (Path(gradguard.__file__).parent / "scaffold" / "cpp.py").is_file()
