# Shared by tests/fuzz/run_fuzz.sh and scripts/fuzz_long.sh (sourced, not run): the fuzz targets, the sources each
# one compiles (torch-free crossicl sources, built with clang: libFuzzer + AddressSanitizer + UBSan), and the
# build, seeding and libFuzzer options they share.
#
# Inputs (environment): FUZZ_CXX (clang++; default clang++-14 or clang++), FUZZ_OUT (build and corpus folder;
# default build/fuzz), CROSSICL_TEST_DATA (the shared data that seeds the corpora; default ../shared).

fuzz_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fuzz_out="${FUZZ_OUT:-$fuzz_root/build/fuzz}"
fuzz_data="${CROSSICL_TEST_DATA:-$fuzz_root/../shared}"
fuzz_cxx="${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}"

FUZZ_TARGETS=(gguf safetensors config llama2c tokenizer_json jsonl tasks template)

# Sources of every target: the harness, then crossicl's own.
fuzz_base="src/core/utf8.cpp src/core/limits.cpp src/core/json.cpp src/core/io.cpp"
fuzz_tokenizer="src/engine/tokenizer_vocab.cpp src/engine/tokenizer_hf.cpp src/engine/tokenizer_hf_bpe.cpp
  src/engine/tokenizer_hf_decoder.cpp src/engine/tokenizer_hf_normalizer.cpp src/engine/tokenizer_hf_post.cpp
  src/engine/tokenizer_hf_pretok.cpp src/engine/tokenizer_unicode.cpp"
declare -A FUZZ_SOURCES=(
  [gguf]="src/engine/gguf.cpp src/engine/gguf_quants.cpp $fuzz_tokenizer"
  [safetensors]="src/engine/safetensors_header.cpp"
  [config]="src/engine/config.cpp"
  [llama2c]="src/engine/llama2c_header.cpp src/engine/config.cpp"
  [tokenizer_json]="$fuzz_tokenizer"
  [jsonl]="src/core/dataset.cpp"
  [tasks]="src/core/task.cpp src/core/template.cpp"
  [template]="src/core/template.cpp"
)
# Largest input libFuzzer makes, in bytes.
declare -A FUZZ_MAX_LEN=(
  [gguf]=65536 [safetensors]=65536 [config]=16384 [llama2c]=64 [tokenizer_json]=65536 [jsonl]=65536
  [tasks]=65536 [template]=4096
)

fuzz_cflags=(-std=c++17 -g -O1 -Wall -Wextra -fno-omit-frame-pointer -D_GLIBCXX_ASSERTIONS -DFMT_HEADER_ONLY=1
  -I"$fuzz_root/include" -I"$fuzz_root/src" -I"$fuzz_root/tests/fuzz")
fuzz_sanitize=address,undefined

# Sanitizer settings for every run: stop at the first error of either sanitizer, report leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

fuzz_known() {
  local t
  for t in "${FUZZ_TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  echo "unknown fuzz target '$1' (known: ${FUZZ_TARGETS[*]}, all)" >&2
  return 1
}

# Whether $1 (an object or binary) is older than any file its depfile $2 lists.
fuzz_stale() {
  local obj=$1 dep=$2 f
  [ -f "$obj" ] && [ -f "$dep" ] || return 0
  for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
    [ "$f" -nt "$obj" ] && return 0
  done
  return 1
}

# Compiles (with coverage instrumentation) one source into $fuzz_out/obj unless up to date; prints the object.
fuzz_compile() {
  local src=$1 obj
  obj="$fuzz_out/obj/$(echo "$src" | tr '/' '_').o"
  if fuzz_stale "$obj" "${obj%.o}.d"; then
    "$fuzz_cxx" "${fuzz_cflags[@]}" -fsanitize=fuzzer-no-link,$fuzz_sanitize -fno-sanitize-recover=undefined \
      -MMD -MF "${obj%.o}.d" -c "$fuzz_root/$src" -o "$obj" >&2 || return 1
  fi
  echo "$obj"
}

# Builds $fuzz_out/fuzz_<target> (under a lock: ctest may run several targets at once).
fuzz_build() {
  local t=$1 objs=() src obj bin="$fuzz_out/fuzz_$1" relink=0
  [ -n "$fuzz_cxx" ] || { echo "no clang++ found (set FUZZ_CXX)" >&2; return 1; }
  mkdir -p "$fuzz_out/obj"
  (
    flock 9
    for src in tests/fuzz/fuzz_$t.cpp ${FUZZ_SOURCES[$t]} $fuzz_base; do
      obj=$(fuzz_compile "$src") || exit 1
      objs+=("$obj")
      [ "$obj" -nt "$bin" ] && relink=1
    done
    [ -f "$bin" ] || relink=1
    if [ $relink = 1 ]; then
      "$fuzz_cxx" -fsanitize=fuzzer,$fuzz_sanitize "${objs[@]}" -lz -o "$bin" || exit 1
    fi
  ) 9>"$fuzz_out/.build.lock"
}

# Writes the generated seeds of a target (from the shared data) to $fuzz_out/seeds/<target> when absent or older
# than the generator.
fuzz_seed() {
  local t=$1 dir="$fuzz_out/seeds/$1"
  if [ ! -d "$dir" ] || [ "$fuzz_root/tests/fuzz/make_seeds.py" -nt "$dir" ]; then
    rm -rf "$dir"
    python3 "$fuzz_root/tests/fuzz/make_seeds.py" "$t" "$fuzz_data" "$dir" >&2 || return 1
  fi
  mkdir -p "$fuzz_out/corpus/$t" "$fuzz_out/artifacts/$t"
}

# libFuzzer options of a target (after the corpus folders): the array FUZZ_ARGS.
fuzz_args() {
  local t=$1
  FUZZ_ARGS=(-max_len="${FUZZ_MAX_LEN[$t]}" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10
    -artifact_prefix="$fuzz_out/artifacts/$t/" -print_final_stats=1)
  [ -f "$fuzz_root/tests/fuzz/dicts/$t.dict" ] && FUZZ_ARGS+=(-dict="$fuzz_root/tests/fuzz/dicts/$t.dict")
  return 0
}

# Corpus folders of a target: the growing corpus first (new inputs go there), then the seeds. The regression
# inputs are replayed on their own (fuzz_replay), not fuzzed from: one not fixed yet would stop every run at once.
fuzz_dirs() {
  local t=$1
  FUZZ_DIRS=("$fuzz_out/corpus/$t" "$fuzz_out/seeds/$t")
}

# Runs every committed crasher of a target once (tests/fuzz/regressions/<target>/*); fails if one still fails.
fuzz_replay() {
  local t=$1 files=()
  [ -d "$fuzz_root/tests/fuzz/regressions/$t" ] || return 0
  mapfile -t files < <(find "$fuzz_root/tests/fuzz/regressions/$t" -type f ! -name '*.md' | sort)
  [ ${#files[@]} -gt 0 ] || return 0
  fuzz_args "$t"
  echo "fuzz_$t: replaying ${#files[@]} regression input(s)"
  "$fuzz_out/fuzz_$t" "${FUZZ_ARGS[@]}" "${files[@]}" > "$fuzz_out/artifacts/$t/replay.log" 2>&1 || {
    tail -n 40 "$fuzz_out/artifacts/$t/replay.log"
    echo "fuzz_$t: a regression input fails again (log: $fuzz_out/artifacts/$t/replay.log)"
    return 1
  }
}
