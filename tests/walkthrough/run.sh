#!/usr/bin/env bash
# README "Your own adapter", run as a user would, in a throwaway clone of this checkout: scaffold my_new_lora, rebuild,
# see the generic checks fail by name, write the README's code (fixtures/scaffold/my_new_lora_fill.py applies exactly
# those blocks), rebuild, and check it: finite differences, compare, the generic ctest and pytest suites on it, its
# goldens, a Trainer run under GradGuardCallback. Each command and its output go to the transcript
# (reports/latest/walkthrough.txt); every step's outcome is asserted (pipefail: a piped command's own exit status
# counts). Exit 0 when the whole path works.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../.ci/env.sh"
transcript="$GG_ROOT/reports/latest/walkthrough.txt"
mkdir -p "$(dirname "$transcript")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$GG_ROOT" "$work/repo" && cd "$work/repo" || exit 1
export CCACHE_BASEDIR="$work/repo"  # the clone's relative paths: the objects of the main build are reused
: > "$transcript"
failed=0
say() { echo "$*" | tee -a "$transcript"; }
# run EXPECT CMD...: EXPECT is ok (exit 0), fail (exit != 0) or a grep pattern the output must contain.
run() {
  local expect=$1; shift
  say ""; say "\$ $*"
  local out rc
  out=$(eval "$@" 2>&1); rc=$?
  if [ "${#out}" -gt 6000 ]; then out="${out:0:1500}"$'\n[...]\n'"${out: -4000}"; fi
  echo "$out" >> "$transcript"; say "[exit $rc]"
  case $expect in
    ok) [ $rc -eq 0 ] ;;
    fail) [ $rc -ne 0 ] ;;
    *) echo "$out" | grep -q -- "$expect" ;;
  esac || { say "WALKTHROUGH STEP FAILED (expected: $expect)"; failed=1; }
}
quiet_setup() { bash .ci/setup > "$work/setup.log" 2>&1 || { tail -40 "$work/setup.log"; return 1; }; tail -1 "$work/setup.log"; }
PARAMS="--param lora_A:r,d_in:kaiming --param lora_B:d_out,r:zeros --param lora_scale:d_out:ones"

run ok quiet_setup
run "edited   src/adapters/registry.list" .venv/bin/gradguard new-adapter my_new_lora $PARAMS
run "already in src/adapters/registry.list" .venv/bin/gradguard new-adapter my_new_lora $PARAMS
run ok git status --short
run ok quiet_setup
run "not implemented: my_new_lora forward (eigen)" .venv/bin/gradguard gradcheck my_new_lora
run "tests failed out of" "ctest --test-dir build -R my_new_lora | grep -E 'tests passed|Failed'"
say ""; say "# writing the code of README step 2 (fixtures/scaffold/my_new_lora_fill.py applies exactly those blocks)"
run ok ".venv/bin/python -c 'from pathlib import Path; from fixtures.scaffold.my_new_lora_fill import fill; fill(Path(\".\"))'"
run ok quiet_setup
run ok .venv/bin/gradguard gradcheck my_new_lora --mode full
run ok .venv/bin/gradguard gradcheck my_new_lora --mode full --backend torch
run ok .venv/bin/gradguard compare my_new_lora
run ok "ctest --test-dir build -R my_new_lora | grep -E 'tests passed|Failed'"
run ok ".venv/bin/python fixtures/make_goldens.py 2>&1 | tail -1"
run "my_new_lora-aligned.safetensors" git status --short fixtures
# (test_scaffold.py scaffolds my_new_lora itself, into copies: in this clone the name is taken, so it is left out)
run ok ".venv/bin/python -m pytest -q -p no:cacheprovider tests/python -k my_new_lora --ignore tests/python/test_scaffold.py"
run ok ".venv/bin/python tests/walkthrough/train_my_new_lora.py $work/run 2>&1 | grep -v Warning | grep -v warnings.warn | grep -v \"^{'loss'\""
say ""
[ $failed -eq 0 ] && say "walkthrough: every step as the README says" || say "walkthrough: FAILED (see above)"
exit $failed
