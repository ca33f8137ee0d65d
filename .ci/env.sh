# Sourced by the .ci scripts: where the environment lives.
# The heavy Python environment (torch, peft, transformers: several GB) lives outside the clone, keyed by the pinned
# requirements and the interpreter, so every clone on a machine shares it; a fresh machine builds it from scratch.
# Each clone gets a light .venv that sees the heavy one through a .pth file and holds this clone's gradguard.
GG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GG_CACHE=${GG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gradguard}
GG_PYTHON=${GG_PYTHON:-python3}
GG_ENV_KEY=$( { cat "$GG_ROOT/.ci/requirements.txt"; "$GG_PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
GG_HEAVY_VENV="$GG_CACHE/venv-$GG_ENV_KEY"
GG_VENV="$GG_ROOT/.venv"
export CCACHE_BASEDIR="$GG_ROOT"          # relative paths in ccache's hash: clones share compiled objects
export CCACHE_DIR=${CCACHE_DIR:-$GG_CACHE/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
