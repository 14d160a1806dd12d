#!/usr/bin/env bash
# gwbench beyond throughput (short runs; the figures are in perf/RESULTS.md):
# 1. latency percentiles at an offered load: trafgen over net_memif through the dataplane and
#    through testpmd, both directions (loss at that load is reported; this VM's scheduling
#    can stall a core long enough to overflow a memif ring, so up to 0.1% is tolerated here);
# 2. 10,000 SA pairs with traffic spread over all of them, nothing dropped, next to one pair
#    on the same frames (--vs-one-pair);
# 3. 20,000 more SA pairs and policies installed through the control socket while traffic
#    flows through an established pair: none of its packets lost, every SA listed after.
# gwbench itself fails on a drop, a lost packet or a missing SA.
#
# usage: gwbench_scale.sh GWBENCH_BINARY
set -euo pipefail
gw=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--sizes 64 --dirs out,in --runs 1 --seconds 0.5 --warmup 0.5 --no-ceiling)

"$gw" "${common[@]}" --latency-mpps 0.2 --json "$work/latency.json"
python3 - "$work/latency.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
assert len(rows) == 2, rows
for r in rows:
    l = r["latency"]
    assert l, r
    g, t = l["gateway"], l["testpmd"]
    assert g["sent"] > 0 and g["lost"] <= g["sent"] / 1000, l
    assert 0 < g["p50"] <= g["p99"] <= g["max"] and 0 < t["p50"] <= t["max"], l
    print(f"  {r['dir']}: gateway p50 {g['p50']:.1f} us, p99 {g['p99']:.1f} us, {g['lost']} of {g['sent']} lost; testpmd p50 {t['p50']:.1f} us")
print("ok   - latency percentiles through the gateway and through testpmd, both directions")
PY
"$gw" "${common[@]}" --sas 10000 --vs-one-pair --json "$work/sas.json"
python3 - "$work/sas.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
assert len(rows) == 2, rows
for r in rows:
    # Figures only (no threshold: speed is for perf/RESULTS.md), but both runs must be there.
    assert r["one_pair_mpps"]["median"] > 0 and r["ratio_to_one_pair"]["median"] > 0, r
PY
echo "ok   - 10,000 SA pairs, traffic over all of them, nothing dropped; and one pair on the same frames"
"$gw" "${common[@]}" --program 20000
echo "ok   - 20,000 SA pairs programmed under traffic, no packet of the established pair lost"
