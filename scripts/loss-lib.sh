# Where a lost packet went, from counters read before and after a run of test traffic. Source
# it; used by tests/interop_strongswan.sh, tested by tests/loss_lib_test.sh.
#
# A reading is one counter a line, "WHERE NAME... VALUE": WHERE is the namespace or "dataplane";
# h1, gwa and dataplane are our side (the host that sends, our gateway), gwb and h2 lie past it
# (strongSwan's gateway and the host behind it).

# The counters that grew from reading $1 to reading $2, one "WHERE NAME... +GROWTH" a line.
loss_grew() {
  awk 'function key(k, i) {k = $1; for (i = 2; i < NF; i++) k = k " " $i; return k}
    FILENAME == ARGV[1] {was[key()] = $NF; next}
    $NF > was[key()] + 0 {printf "%s +%d\n", key(), $NF - was[key()]}' "$1" "$2"
}

# loss_verdict GREW LOST: whether LOST packets, lost end to end while the counters in GREW
# (loss_grew's output) grew, can be placed. Prints why, and returns
#   0  nothing lost, or no more than the UDP receive-buffer overflows counted past our
#      gateway, with nothing counted on our side: each overflow there is one whole datagram;
#   1  a counter on our side grew: our loss;
#   2  more lost than any counter past our gateway shows: a loss nobody counted.
loss_verdict() {
  local grew=$1 lost=$2 ours theirs list
  ours=$(awk '$1 == "h1" || $1 == "gwa" || $1 == "dataplane" {n += $NF} END {print n + 0}' "$grew")
  theirs=$(awk '($1 == "gwb" || $1 == "h2") && $2 ~ /^udp/ {n += $NF} END {print n + 0}' "$grew")
  list=$(tr '\n' ';' <"$grew")
  if [ "$lost" -eq 0 ]; then
    echo "nothing lost"
    return 0
  elif [ "$ours" -ne 0 ]; then
    echo "on our side: $list"
    return 1
  elif [ "$lost" -le "$theirs" ]; then
    echo "all in receive buffers past our gateway ($list)"
    return 0
  fi
  echo "more than any counter shows (${list:-no counter grew})"
  return 2
}
