#!/usr/bin/env bash
# pip-install: `pip install` of python/ into a fresh virtual environment
# (--system-site-packages: Debian's setuptools, wheel and NumPy; offline:
# --no-build-isolation --no-index), reusing BUILD_DIR through
# INCNN_CMAKE_BUILD_DIR; then, from a directory outside the source tree and
# without PYTHONPATH (so build/python cannot be imported), checks that
# `import incnn` is the installed package with its stubs (__init__.pyi,
# py.typed) and runs the example of docs/python.md as written. Uninstalls.
# Usage: pip_install.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$3
python=/usr/bin/python3
fail() {
  echo "pip-install: FAILED: $*" >&2
  exit 1
}
if ! $python -c 'import ensurepip, setuptools, wheel' 2>/dev/null; then
  echo "pip-install: python3-venv, python3-setuptools or python3-wheel missing: skipped"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
# Only Debian's packages: no pip configuration, no extra wheel directories.
unset PYTHONPATH PYTHONHOME PIP_REQUIRE_VIRTUALENV PIP_FIND_LINKS PIP_INDEX_URL \
  PIP_EXTRA_INDEX_URL
export PIP_CONFIG_FILE=/dev/null

echo "== venv (--system-site-packages) in $work/venv"
$python -m venv --system-site-packages "$work/venv"
venv_python=$work/venv/bin/python
echo "== pip install --no-build-isolation --no-index $src/python"
INCNN_CMAKE_BUILD_DIR=$build "$venv_python" -m pip install --no-build-isolation \
  --no-index --no-cache-dir --disable-pip-version-check "$src/python" \
  >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; fail "pip install"; }
grep -E '^Successfully installed' "$work/pip.log"

site=$("$venv_python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
for f in incnn/__init__.py incnn/__init__.pyi incnn/py.typed; do
  [ -f "$site/$f" ] || fail "$f not installed in $site"
done
ls "$site"/incnn/incnn.*.so >/dev/null || fail "no extension module in $site/incnn"
cmp -s "$site/incnn/__init__.pyi" "$src/python/incnn.pyi" ||
  fail "the installed stubs are not python/incnn.pyi"
echo "installed: $(cd "$site" && ls incnn | tr '\n' ' ')"

# Outside the source tree: `models` is the only link back into it, for the
# example's relative paths.
run=$work/run
mkdir -p "$run"
ln -s "$src/models" "$run/models"
"$python" - "$src/docs/python.md" "$run/example.py" <<'PY'
import sys
page = open(sys.argv[1], encoding="utf-8").read()
code = page.split("## Example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
open(sys.argv[2], "w", encoding="utf-8").write(code)
PY
cd "$run"
"$venv_python" - "$site" <<'PY' || fail "import incnn"
import importlib.metadata, os, sys
import incnn
site = sys.argv[1]
assert os.path.realpath(incnn.__file__).startswith(
    os.path.join(os.path.realpath(site), "incnn") + os.sep), incnn.__file__
assert incnn.__version__ == importlib.metadata.version("incnn"), (
    incnn.__version__, importlib.metadata.version("incnn"))
# The module itself, under its own name (as in build/python), not a wrapper.
assert incnn.__name__ == "incnn" and incnn.Session.__module__ == "incnn", (
    incnn.__name__, incnn.Session.__module__)
assert type(incnn).__name__ == "module" and incnn.__file__.endswith(".so"), incnn.__file__
missing = [n for n in ("compile", "Program", "Session", "Document", "Tokenizer",
                       "OutOfContractError") if not hasattr(incnn, n)]
assert not missing, missing
print("import incnn:", incnn.__file__, incnn.__version__)
PY
echo "== docs/python.md's example, from $run"
"$venv_python" example.py >"$work/example.txt" 2>&1 ||
  { cat "$work/example.txt"; fail "the docs/python.md example"; }
head -3 "$work/example.txt"
echo "... ($(wc -l <"$work/example.txt") lines)"
[ "$(grep -c ' us ' "$work/example.txt")" -ge 30 ] || fail "the example printed too little"

echo "== pip uninstall"
"$venv_python" -m pip uninstall -y --disable-pip-version-check incnn >/dev/null
[ ! -e "$site/incnn" ] || fail "pip uninstall left $site/incnn"
echo "pip-install: ok"
