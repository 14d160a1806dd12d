#!/bin/bash
# Counts the instructions `Pipeline::process_burst` executes per packet, and how many of them
# are outside the AEAD call (the backend's own function, intel-ipsec-mb's library and our
# wrapper around it), by running `esp-stages --tables pipeline` under callgrind.
#
# Why: on the shared VM of perf/RESULTS.md, timings of one build differ by tens of percent from
# run to run, and a change that saves 5% of a packet's work cannot be seen in them. An
# instruction count is the same on every run. It is not time (it says nothing of cache misses,
# stalls or how many instructions retire per cycle), but for the one-SA path, whose sampled
# profiles are flat (no instruction stands out), fewer instructions is what makes it faster.
#
# Under valgrind, intel-ipsec-mb finds no AVX-512 and runs its AVX2 code, so the library's own
# count differs from a native run. Compare builds by the total when the change may touch the
# wrapper (the library's share does not change between builds), else by the part outside.
#
# usage: perf/instructions.sh [ESP_STAGES_BINARY] [esp-stages arguments]
#   default binary target/release/esp-stages; default arguments --sizes 64 --dirs out,in
#   e.g. perf/instructions.sh target/release/esp-stages --sizes 64,1420 --dirs out
set -euo pipefail
bin=target/release/esp-stages
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  bin=$1
  shift
fi
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--sizes 64 --dirs out,in)
command -v valgrind >/dev/null || { echo "needs valgrind (scripts/deps.sh installs it)" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p perf" >&2; exit 1; }

sizes=64
dirs=out,in
secs=1
extra=()
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --sizes) sizes=${args[$((i + 1))]}; i=$((i + 1)) ;;
    --dirs) dirs=${args[$((i + 1))]}; i=$((i + 1)) ;;
    --seconds-per-case) secs=${args[$((i + 1))]}; i=$((i + 1)) ;;
    *) extra+=("${args[$i]}") ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-6s %-4s %10s %12s %12s %12s\n' size dir packets "Ir/packet" "AEAD" "outside"
for size in ${sizes//,/ }; do
  for dir in ${dirs//,/ }; do
    out="$work/cg.$size.$dir"
    # esp-stages re-executes itself to set a glibc tunable; with it set already, it does not,
    # and stays under valgrind.
    GLIBC_TUNABLES=glibc.malloc.hugetlb=0 valgrind --tool=callgrind --callgrind-out-file="$out" \
      "$bin" --tables pipeline --backend ipsec-mb --sizes "$size" --dirs "$dir" --runs 1 \
      --seconds-per-case "$secs" "${extra[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
    callgrind_annotate --tree=caller --inclusive=yes "$out" >"$work/tree" 2>/dev/null
    python3 - "$work/tree" "$size" "$dir" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split('\n')
BURST = 32  # esp-stages' burst; every timed burst is full
def count(l):
    return int(l.split()[0].replace(',', ''))
def callers(name):
    """A function's callers, as (inclusive cost through that caller, calls, caller's line)."""
    for i, l in enumerate(lines):
        if '*' in l and name in l:
            out = []
            j = i - 1
            while j >= 0 and '<' in lines[j]:
                m = re.search(r'\(([\d,]+)x\)', lines[j])
                if m:
                    out.append((count(lines[j]), int(m.group(1).replace(',', '')), lines[j]))
                j -= 1
            if out:
                return out
    return []
# The timed bursts only: those of the benchmark's rounds, not its checks before timing.
timed = [c for c in callers('pipeline.rs:dataplane::pipeline::Pipeline::process_burst') if 'PipeBench::round' in c[2]]
if not timed:
    sys.exit(f"no timed bursts found for {sys.argv[2]} {sys.argv[3]}")
cost, bursts = timed[0][0], timed[0][1]
packets = bursts * BURST
# One AEAD call a packet, costing the same from every caller at one packet size: the
# backend's own function (its wrapper around the library and the library), not `Cipher`'s
# dispatch to it, which the compiler may inline into the caller.
f = '<dataplane::dpdk::ipsec_mb::IpsecMbGcm<_> as esp::aead::Aead>::' + ('seal' if sys.argv[3] == 'out' else 'open_appended')
cs = callers(f)
if not cs:
    sys.exit(f"no calls of {f} found for {sys.argv[2]} {sys.argv[3]}")
aead = sum(c[0] for c in cs) / sum(c[1] for c in cs)
print(f"{sys.argv[2]:<6} {sys.argv[3]:<4} {packets:>10} {cost / packets:>12.1f} {aead:>12.1f} {cost / packets - aead:>12.1f}")
PY
  done
done
