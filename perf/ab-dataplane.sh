#!/bin/bash
# Compares two dataplane builds under gwbench, alternating them round by round, so that the
# machine's drift affects both alike: prints each round's ratio (B/A, Mpps) per case and the
# median. On a shared or virtual machine, figures taken minutes apart differ more than most
# changes do; alternated rounds are how the changes in perf/RESULTS.md were judged.
#
# Each case also gets two measures of how far the median can be trusted: in how many rounds B
# was faster, with the two-sided sign-test p-value (the chance of a split at least that uneven
# if neither build were faster), and a 90% bootstrap interval of the median ratio. Running a
# build against a copy of itself shows the machine's noise: on the VM of perf/RESULTS.md, 14
# such rounds ranged from 0.63 to 1.68 (median 0.99), so a change of 5% needs dozens of rounds.
#
# usage: perf/ab-dataplane.sh ROUNDS DATAPLANE_A DATAPLANE_B [gwbench arguments]  (ROUNDS even)
#   e.g. perf/ab-dataplane.sh 6 /tmp/dataplane.old target/release/dataplane --sizes 64 --dirs out,in --sas 100000
set -euo pipefail
rounds=$1 a=$2 b=$3
shift 3
if (( rounds % 2 )); then echo "ab-dataplane.sh: an odd number of rounds runs A first once more than B" >&2; fi
gwbench=${GWBENCH:-$(dirname "$0")/../target/release/gwbench}
for r in $(seq "$rounds"); do
  # A first in odd rounds, B first in even ones: whichever runs second in a round was slower
  # in an A/A test (2 of 8 rounds faster, median 0.93), so a fixed order biases the ratio.
  order=("$a" "$b")
  if (( r % 2 == 0 )); then order=("$b" "$a"); fi
  for bin in "${order[@]}"; do
    "$gwbench" --backends ipsec-mb --runs 1 --warmup 1 --no-ceiling --dataplane "$bin" "$@" 2>/dev/null |
      awk -v r="$r" -v b="$bin" '/^(out|in) / {print r, b, $1 "-" $2, $6}'
  done
done | python3 -c '
import math, random, statistics, sys
a_bin = sys.argv[1]

def sign_test(ratios):
    n = len(ratios)
    k = sum(x > 1 for x in ratios)
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return k, n, min(1.0, 2 * tail)

def bootstrap_median(ratios, rng=random.Random(1), draws=2000):
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(0.05 * draws)], medians[int(0.95 * draws) - 1]

a, b = {}, {}
for line in sys.stdin:
    r, binary, case, mpps = line.split()
    (a if binary == a_bin else b)[(r, case)] = float(mpps)
for case in sorted({c for _, c in a}):
    ratios = [b[k] / a[k] for k in a if k[1] == case and k in b]
    print(case, "B/A per round:", " ".join("%.3f" % x for x in ratios),
          "| median %.3f" % statistics.median(ratios),
          "| B faster in %d of %d (sign test p %.2f)" % sign_test(ratios),
          "| 90%% interval %.3f-%.3f" % bootstrap_median(ratios),
          "| Mpps A %.2f B %.2f" % (statistics.median([a[k] for k in a if k[1] == case]),
                                   statistics.median([b[k] for k in b if k[1] == case])))
' "$a"
