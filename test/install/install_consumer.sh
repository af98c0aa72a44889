#!/usr/bin/env bash
# install-consumer: installs the runtime, dev and tools components of a build
# into a fresh prefix, checks the layout (versioned soname, headers without
# nlohmann/Eigen, incnnConfig.cmake, incnn.pc), builds runtime/examples/embed.c
# and test/install/consumer/consumer.cpp out of tree, once with
# find_package(incnn) (shared and static) and once with pkg-config (plain
# cc/c++ command lines), then runs them all on models/pep-vq compiled by the
# installed incnn-compile: every embed output equals the in-tree example's,
# and the consumers check each edit against a from-scratch Evaluator.
# Usage: install_consumer.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$3
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
prefix=$work/prefix
fail() {
  echo "install-consumer: FAILED: $*" >&2
  exit 1
}

echo "== cmake --install (runtime, dev, tools) into $prefix"
for component in runtime dev tools; do
  cmake --install "$build" --prefix "$prefix" --component "$component" >/dev/null
done
(cd "$prefix" && find . \( -type f -o -type l \) | sort) > "$work/files.txt"
sed 's/^/  /' "$work/files.txt"

libdir=$prefix/lib
for f in lib/libincnn_runtime.so.0.1.0 lib/libincnn_runtime.so.0 \
  lib/libincnn_runtime.so lib/libincnn_runtime.a \
  lib/cmake/incnn/incnnConfig.cmake lib/cmake/incnn/incnnConfigVersion.cmake \
  lib/cmake/incnn/incnnTargets.cmake lib/pkgconfig/incnn.pc \
  include/incnn/runtime/incnn.h include/incnn/runtime/Session.h \
  bin/incnn-run bin/incnn-bench; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
[ "$(readlink "$libdir/libincnn_runtime.so.0")" = libincnn_runtime.so.0.1.0 ] ||
  fail "libincnn_runtime.so.0 does not point to .so.0.1.0"
[ "$(readlink "$libdir/libincnn_runtime.so")" = libincnn_runtime.so.0 ] ||
  fail "libincnn_runtime.so does not point to .so.0"
soname=$(readelf -d "$libdir/libincnn_runtime.so.0.1.0" |
  sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libincnn_runtime.so.0 ] || fail "soname is '$soname'"
echo "soname: $soname"
# Only the runtime and the tools: no compiler libraries, no JSON headers.
if grep -E 'libIncnn|BoundedJson|Serialize\.h' "$work/files.txt"; then
  fail "compiler libraries or BoundedJson.h or Serialize.h installed"
fi

echo "== installed headers compile alone (-I<prefix>/include only)"
if grep -rlE '#include [<"](nlohmann|Eigen|sentencepiece)' "$prefix/include"; then
  fail "an installed header includes a private dependency"
fi
for h in "$prefix"/include/incnn/runtime/*.h; do
  name=incnn/runtime/$(basename "$h")
  echo "#include <$name>" | c++ -std=c++17 -fsyntax-only -I"$prefix/include" -x c++ - ||
    fail "$name does not compile alone"
done
echo '#include <incnn/runtime/incnn.h>' |
  cc -std=c99 -Wall -Werror -fsyntax-only -I"$prefix/include" -x c - ||
  fail "incnn.h does not compile as C99"

echo "== find_package(incnn): embed.c and consumer.cpp, shared and static"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake "${generator[@]}" -S "$src/test/install/consumer" -B "$work/cmake" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DINCNN_EMBED_C="$src/runtime/examples/embed.c" >"$work/cmake.log" ||
  { cat "$work/cmake.log"; fail "configuring the consumer project"; }
grep 'incnn 0.1.0 from' "$work/cmake.log"
cmake --build "$work/cmake" >"$work/cmake-build.log" 2>&1 ||
  { cat "$work/cmake-build.log"; fail "building the consumer project"; }

echo "== pkg-config incnn: embed.c and consumer.cpp with cc/c++"
export PKG_CONFIG_PATH=$libdir/pkgconfig
echo "pkg-config --modversion incnn: $(pkg-config --modversion incnn)"
[ "$(pkg-config --modversion incnn)" = 0.1.0 ] || fail "pkg-config version"
cflags=$(pkg-config --cflags incnn)
libs=$(pkg-config --libs incnn)
echo "cflags: $cflags"
echo "libs: $libs"
mkdir -p "$work/pc"
# shellcheck disable=SC2086
cc -O2 $cflags "$src/runtime/examples/embed.c" -o "$work/pc/embed" $libs \
  -Wl,-rpath,"$(pkg-config --variable=libdir incnn)"
# shellcheck disable=SC2086
c++ -O2 $cflags "$src/test/install/consumer/consumer.cpp" -o "$work/pc/consumer" \
  $libs -Wl,-rpath,"$(pkg-config --variable=libdir incnn)"

echo "== the shared builds load the installed library; the static ones none"
for exe in cmake/embed-shared cmake/consumer-shared pc/embed pc/consumer; do
  ldd "$work/$exe" | grep "libincnn_runtime.so.0 => $libdir/" > /dev/null ||
    { ldd "$work/$exe"; fail "$exe does not load $libdir/libincnn_runtime.so.0"; }
done
for exe in cmake/embed-static cmake/consumer-static; do
  ! readelf -d "$work/$exe" | grep libincnn_runtime > /dev/null ||
    fail "$exe needs libincnn_runtime.so"
done

echo "== running on models/pep-vq compiled by the installed incnn-compile"
program=$work/pep.incnn
if [ -x "$prefix/bin/incnn-compile" ]; then
  "$prefix/bin/incnn-compile" "$src/models/pep-vq" -o "$program" 2>/dev/null
elif [ -x "$build/bin/incnn-compile" ]; then
  "$build/bin/incnn-compile" "$src/models/pep-vq" -o "$program" 2>/dev/null
else
  echo "install-consumer: no incnn-compile (runtime-only build): skipped"
  exit 77
fi
text=$(head -c 1200 "$src/models/pep-vq/sample.txt")
edits=(replace:2:7 insert:0:8,9 delete:3:2 insert:8:5)
"$build/runtime/incnn-embed-example" "$program" --text "$text" "${edits[@]}" \
  >"$work/embed-in-tree.txt"
for exe in cmake/embed-shared cmake/embed-static pc/embed; do
  "$work/$exe" "$program" --text "$text" "${edits[@]}" >"$work/out.txt"
  cmp -s "$work/out.txt" "$work/embed-in-tree.txt" ||
    { diff "$work/out.txt" "$work/embed-in-tree.txt" | head; fail "$exe output differs"; }
  echo "$exe: $(grep -c '^step' "$work/out.txt") steps, identical to the in-tree example"
done
"$prefix/bin/incnn-run" "$program" --text "$src/models/pep-vq/sample.txt" \
  --edits "$src/models/pep-vq/sample-edits.jsonl" --verify --json >/dev/null ||
  fail "the installed incnn-run"
echo "bin/incnn-run --verify on the sample edits: ok"
for exe in cmake/consumer-shared cmake/consumer-static pc/consumer; do
  "$work/$exe" "$program" "$src/models/pep-vq/sample.txt" >"$work/$(basename "$exe")-$(dirname "$exe").txt" ||
    { cat "$work/$(basename "$exe")-$(dirname "$exe").txt"; fail "$exe"; }
  echo "$exe: $(tail -1 "$work/$(basename "$exe")-$(dirname "$exe").txt")"
done
cmp -s "$work/consumer-shared-cmake.txt" "$work/consumer-static-cmake.txt" &&
  cmp -s "$work/consumer-shared-cmake.txt" "$work/consumer-pc.txt" ||
  fail "the consumers' outputs differ between builds"
echo "install-consumer: ok"
