#!/usr/bin/env bash
# Peak memory of an agent (default: the release build) on a private bus under huge calls,
# a fresh agent per attack: three 30 MiB Properties.Get / GetWorker (s, ay) calls, or three
# Introspect on a 20 MiB object path, from python3-dbus. Prints VmHWM and VmRSS after.
#
#   benches/huge-messages.sh [AGENT]     # e.g. an older build, to compare
#
# Needs dbus-daemon and python3-dbus (/usr/bin/python3).
set -u
agent=${1:-$(dirname "$0")/../target/release/scoreboard-agent}
for kind in get getworker getworker-ay introspect; do
dir=$(mktemp -d); mkdir -p $dir/services.d $dir/web
printf 'bus = "session"\ninterval = "1s"\nstate_directory = "%s"\n' "$dir" > $dir/agent.toml
printf 'unit = "web"\ndirectory = "%s/web"\nnotify = "none"\n' "$dir" > $dir/services.d/web.toml
addr=$(dbus-daemon --session --print-address --fork --print-pid=3 3>$dir/dpid | head -1)
DBUS_SESSION_BUS_ADDRESS=$addr GLIBC_TUNABLES=${TUNABLES:-} $agent --config $dir/agent.toml > $dir/log 2>&1 &
apid=$!
sleep 2
base=$(grep VmHWM /proc/$apid/status | awk '{print $2}')
DBUS_SYSTEM_BUS_ADDRESS=$addr timeout 60 /usr/bin/python3 - $kind <<'PY'
import dbus, sys
kind = sys.argv[1]
bus = dbus.SystemBus(private=True)
big = "x" * (30 << 20)
path = "/" + "/".join(["x" * 255] * ((20 << 20) // 256))
s = "/io/scoreboard/Agent1/service/web_2eservice"
calls = {"get": ("/io/scoreboard/Agent1", "org.freedesktop.DBus.Properties", "Get", "ss", (big, "Services")),
 "getworker": (s, "io.scoreboard.Agent1.Service", "GetWorker", "s", (big,)),
 "getworker-ay": (s, "io.scoreboard.Agent1.Service", "GetWorker", "ay", (dbus.ByteArray(big.encode()),)),
 "introspect": (path, "org.freedesktop.DBus.Introspectable", "Introspect", "", ())}
for _ in range(3):
    try: bus.call_blocking("io.scoreboard.Agent1", *calls[kind], timeout=5)
    except dbus.exceptions.DBusException as e: pass
PY
sleep 1
if kill -0 $apid 2>/dev/null; then echo "$kind: VmHWM $(grep VmHWM /proc/$apid/status | awk '{print $2}') KiB, VmRSS after $(grep VmRSS /proc/$apid/status | awk '{print $2}') KiB (at start $base KiB)"; else echo "$kind: agent died"; fi
kill $apid 2>/dev/null; kill $(cat $dir/dpid); rm -rf $dir
done
