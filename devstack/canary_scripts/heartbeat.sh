# Run inside a sandbox by the canary (devstack/canary.py): `sh heartbeat.sh start FILE` detaches a
# loop (setsid, nohup) that writes a count into FILE twice a second, for at most 10 minutes,
# and waits for two beats; `sh heartbeat.sh check FILE`, run by a later action, exits 0, printing
# `ESCAPED: …`, when the count still moves (the loop outlived the action that started it), and 1
# otherwise, saying `heartbeat stopped` only when it saw a count that no longer moves.
set -u
file=$2
case $1 in
  beat)
    n=0
    while [ $n -lt 1200 ]; do n=$((n + 1)); echo $n > "$file"; sleep 0.5; done ;;
  start)
    rm -f "$file"
    setsid nohup sh "$0" beat "$file" > /dev/null 2>&1 < /dev/null &
    sleep 1.5
    beats=$(cat "$file" 2> /dev/null); beats=${beats:-0}
    if [ "$beats" -ge 2 ]; then echo "heartbeat started ($beats beats)"; else echo "no heartbeat: $beats beats"; exit 1; fi ;;
  check)
    if [ ! -f "$file" ]; then echo "no heartbeat file: cannot tell"; exit 1; fi
    before=$(cat "$file"); sleep 1.5; after=$(cat "$file")
    if [ "$before" != "$after" ]; then echo "ESCAPED: heartbeat still beating ($before, then $after)"; exit 0; fi
    echo "heartbeat stopped at $after beats"; exit 1 ;;
esac
