#!/usr/bin/env bash
# deb-packages: `cpack -G DEB` on a build makes libincnn-runtime0, libincnn-dev
# and incnn-tools; checks each one's control fields (dpkg-deb -f/-I) and
# contents (dpkg-deb -c), then unpacks all three into a scratch root and
# builds runtime/examples/embed.c there with pkg-config --define-prefix and
# runs it, and the unpacked incnn-run, on a program compiled by the unpacked
# incnn-compile.
# Exits 77 (skipped) without cpack or dpkg-deb.
# Usage: deb_packages.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$3
for tool in cpack dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "deb-packages: $tool not found: skipped"
    exit 77
  fi
done
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
fail() {
  echo "deb-packages: FAILED: $*" >&2
  exit 1
}

echo "== cpack -G DEB"
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack"; }
ls -l "$work"/*.deb
deb() { # PACKAGE_NAME -> its file
  local f
  f=$(ls "$work/$1"_*.deb 2>/dev/null | head -1)
  [ -n "$f" ] || fail "no $1 package"
  echo "$f"
}
runtime=$(deb libincnn-runtime0)
dev=$(deb libincnn-dev)
tools=$(deb incnn-tools)
for f in "$runtime" "$dev" "$tools"; do
  echo "-- $(basename "$f")"
  dpkg-deb -f "$f" Package Version Architecture Section Depends | sed 's/^/   /'
  dpkg-deb -c "$f" | awk '{print "   " $1 " " $6 $7 $8}' | grep -v '/$' || true
done

has() { # DEB PATH [symlink target]: the package holds the file
  dpkg-deb -c "$1" | awk '{print $6 ($7 ? " " $7 " " $8 : "")}' |
    grep -qxF "./$2${3:+ -> $3}" ||
    fail "$(basename "$1") lacks /$2${3:+ -> $3}"
}
hasnot() { # DEB REGEX: no file matches
  if dpkg-deb -c "$1" | awk '{print $6}' | grep -E "$2"; then
    fail "$(basename "$1") holds files matching $2"
  fi
}
depends() { # DEB REGEX: Depends matches
  dpkg-deb -f "$1" Depends | grep -E "$2" > /dev/null ||
    fail "$(basename "$1"): Depends lacks $2"
}
version=$(dpkg-deb -f "$runtime" Version)

echo "== libincnn-runtime0: the shared library, its soname link, shlibs"
has "$runtime" usr/lib/libincnn_runtime.so.0.1.0
has "$runtime" usr/lib/libincnn_runtime.so.0 libincnn_runtime.so.0.1.0
hasnot "$runtime" '\.a$|\.so$|/include/|/bin/|cmake|pkgconfig'
depends "$runtime" 'libsentencepiece0'
depends "$runtime" 'libstdc\+\+6'
dpkg-deb -I "$runtime" shlibs | grep '^libincnn_runtime 0 libincnn-runtime0' > /dev/null ||
  fail "libincnn-runtime0 has no shlibs entry"
dpkg-deb -I "$runtime" postinst | grep ldconfig > /dev/null ||
  fail "libincnn-runtime0 does not run ldconfig"

echo "== libincnn-dev: headers, static library, .so link, cmake config, .pc"
for h in incnn.h Program.h Session.h Runtime.h Document.h Tokenizer.h \
  EditLine.h Limits.h; do
  has "$dev" "usr/include/incnn/runtime/$h"
done
has "$dev" usr/lib/libincnn_runtime.so libincnn_runtime.so.0
has "$dev" usr/lib/libincnn_runtime.a
for f in incnnConfig.cmake incnnConfigVersion.cmake incnnTargets.cmake; do
  has "$dev" "usr/lib/cmake/incnn/$f"
done
has "$dev" usr/lib/pkgconfig/incnn.pc
hasnot "$dev" 'BoundedJson|Serialize\.h|\.so\.0|/bin/'
depends "$dev" "libincnn-runtime0 \(= $version\)"
depends "$dev" 'libsentencepiece-dev'

echo "== incnn-tools: the tools"
tool_list=(incnn-run incnn-bench)
for t in incnn-serve incnn-compile incnn-opt; do
  [ -x "$build/bin/$t" ] && tool_list+=("$t")
done
for t in "${tool_list[@]}"; do
  has "$tools" "usr/bin/$t"
done
hasnot "$tools" '/lib/|/include/'
depends "$tools" 'libsentencepiece0'
echo "tools: ${tool_list[*]}"

echo "== unpacked: pkg-config build of embed.c, the unpacked tools run"
root=$work/root
for f in "$runtime" "$dev" "$tools"; do
  dpkg-deb -x "$f" "$root"
done
grep -qx 'prefix=/usr' "$root/usr/lib/pkgconfig/incnn.pc" ||
  fail "incnn.pc in libincnn-dev does not say prefix=/usr"
export PKG_CONFIG_PATH=$root/usr/lib/pkgconfig
# The .pc says /usr; unpacked elsewhere, --define-prefix finds the prefix.
pc() { pkg-config --define-prefix "$@"; }
[ "$(pc --variable=libdir incnn)" -ef "$root/usr/lib" ] ||
  fail "incnn.pc does not relocate: libdir $(pc --variable=libdir incnn)"
# shellcheck disable=SC2046
cc -O2 $(pc --cflags incnn) "$src/runtime/examples/embed.c" -o "$work/embed" \
  $(pc --libs incnn) -Wl,-rpath,"$root/usr/lib"
ldd "$work/embed" | grep "libincnn_runtime.so.0 => $root/usr/lib/" > /dev/null ||
  fail "embed does not load the unpacked library"
if [ -x "$root/usr/bin/incnn-compile" ]; then
  "$root/usr/bin/incnn-compile" "$src/models/pep-vq" -o "$work/pep.incnn" 2>/dev/null
  "$work/embed" "$work/pep.incnn" --text "$(head -c 600 "$src/models/pep-vq/sample.txt")" \
    replace:2:7 delete:3:2 | tail -2
  "$root/usr/bin/incnn-run" "$work/pep.incnn" --text "$src/models/pep-vq/sample.txt" \
    --edits "$src/models/pep-vq/sample-edits.jsonl" --verify >/dev/null ||
    fail "the unpacked incnn-run"
  echo "unpacked incnn-compile, incnn-run --verify and embed: ok"
fi
echo "deb-packages: ok"
