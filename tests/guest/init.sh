#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the L2 guest: a real Linux guest with Debian's perf tool, booted
# by QEMU inside the test VM on the patched KVM (tests/guest/run.sh).  Runs
# the workloads named on the command line over the fixed busy loop and
# prints one machine-readable line per round; "L2-MARK" lines let the L1
# side snapshot kvm_vpmu's statistics around each round.
#
#   l2.work=stat8,rec1,rec6       workloads, in order (and stata: perf
#                                 stat -a with the loop on every vCPU)
#   l2.rounds=N                   rounds of each (the first is warm-up)
#   l2.iters=M                    millions of loop iterations per round

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp
mount -t tmpfs tmp /tmp

arg() { sed -n "s/.*l2\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
work=$(arg work | tr , ' ')
rounds=$(arg rounds)
iters=$(arg iters)

# 8 counting events on 4 counters (perf multiplexes them), and 6 sampling
# events.  Raw AMD events without constraints: the soft PMU counts time for
# each of them, and they stay schedulable on any counter.
EV8=r76,rc0,rc1,rc2,rc3,rc4,rc5,rc6
EV6=r76,rc0,rc1,rc2,rc3,rc4

echo "L2-INFO cpus $(grep -c '^processor' /proc/cpuinfo)"
echo "L2-INFO pmu $(dmesg | grep -m1 'Performance Events:' | sed 's/.*Performance Events: //')"
echo "L2-INFO counters $(dmesg | sed -nE 's/.*generic (registers|counters): *([0-9]+).*/\2/p' | head -1)"
echo "L2-INFO max_sample_rate $(cat /proc/sys/kernel/perf_event_max_sample_rate)"

mark() { # mark <begin|end> <work> <round>; the L1 side reads the host stats
	echo "L2-MARK $1 $2 $3"
	sleep 0.3
}

# perf report --stats: the totals and each event's samples.
record_stats() { # record_stats <work> <round> <loop ns>
	perf report -i /tmp/perf.data --stats 2>/dev/null >/tmp/stats
	perf script -i /tmp/perf.data -F event 2>/dev/null | sed 's/: *$//' |
		sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = "," }' >/tmp/per_event
	awk -v w="$1" -v r="$2" -v ns="$3" -v base="$base" -v per="$(cat /tmp/per_event)" '
	/^Aggregated stats:/ { agg = 1; next }
	/ stats:$/ { agg = 0 }
	agg && /SAMPLE events:/ { samples = $3 }
	agg && /LOST events:/ { lost += $3 }
	agg && /LOST_SAMPLES events:/ { lost += $3 }
	agg && / THROTTLE events:/ { thr = $3 }
	agg && /UNTHROTTLE events:/ { unthr = $3 }
	END {
		printf "L2-RESULT work %s round %d ns %.0f base_ns %.0f samples %d lost %d throttle %d unthrottle %d per_event %s\n",
			w, r, ns, base, samples, lost, thr, unthr, per
	}' /tmp/stats
}

# perf stat -x,: count,unit,event,run time,percent running,...
stat_result() { # stat_result <work> <round> <loop ns>
	awk -F, -v w="$1" -v r="$2" -v ns="$3" -v base="$base" '
	$3 ~ /^r[0-9a-f]+$/ {
		n++
		if ($1 !~ /^[0-9]+$/) { missing++; next }
		pct = $5 + 0
		if (min == "" || pct < min) min = pct
		if (pct > max) max = pct
		# Counts per ns of running time: the multiplexing-scaled rate.
		rate = $4 > 0 ? $1 / $4 : 0
		if (rmin == "" || rate < rmin) rmin = rate
		if (rate > rmax) rmax = rate
	}
	END {
		printf "L2-RESULT work %s round %d ns %.0f base_ns %.0f events %d missing %d running_pct_min %.1f running_pct_max %.1f rate_min %.3f rate_max %.3f\n",
			w, r, ns, base, n, missing + 0, min, max, rmin, rmax
	}' /tmp/stat
}

loop_ns() { sed -n 's/^loop ns \([0-9]*\).*/\1/p' /tmp/out; }
# interrupts: the guest's NMI, PMI and local timer counts, summed over its
# CPUs, and its context switches, as one line of numbers.
interrupts() {
	awk '$1 == "NMI:" || $1 == "PMI:" || $1 == "LOC:" {
		for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n[$1] += $i
	}
	END { printf "%d %d %d ", n["NMI:"], n["PMI:"], n["LOC:"] }' /proc/interrupts
	awk '$1 == "ctxt" { print $2 }' /proc/stat
}

loop_on_other_cpus() {
	for c in $(seq 2 "$(grep -c '^processor' /proc/cpuinfo)"); do
		/bin/loop "$iters" >/dev/null &
	done
}

for w in $work; do
	r=1
	while [ "$r" -le "$rounds" ]; do
		# The guest's own baseline, right before each round: the same loop
		# without perf, so that drift in the emulator's speed cancels out.
		[ "$w" = stata ] && loop_on_other_cpus
		/bin/loop "$iters" >/tmp/out
		base=$(loop_ns)
		wait
		mark begin "$w" "$r"
		before=$(interrupts)
		case $w in
		stat8)
			perf stat -x, -o /tmp/stat -e $EV8 -- /bin/loop "$iters" /dev/console >/tmp/out
			echo "L2-PERF-EXIT $w $r $?"
			stat_result "$w" "$r" "$(loop_ns)"
			;;
		stata)
			# System-wide on every vCPU: the loop on each, perf on all.
			loop_on_other_cpus
			perf stat -a -x, -o /tmp/stat -e $EV8 -- /bin/loop "$iters" /dev/console >/tmp/out
			echo "L2-PERF-EXIT $w $r $?"
			wait
			stat_result "$w" "$r" "$(loop_ns)"
			;;
		rec1 | rec6)
			ev=r76
			[ "$w" = rec6 ] && ev=$EV6
			perf record -q -o /tmp/perf.data -e "$ev" -- /bin/loop "$iters" /dev/console >/tmp/out 2>/tmp/err
			echo "L2-PERF-EXIT $w $r $?"
			record_stats "$w" "$r" "$(loop_ns)"
			;;
		esac
		echo "$before $(interrupts)" | awk -v w="$w" -v r="$r" '{
			printf "L2-INFO interrupts work %s round %d nmi %d pmi %d timer %d ctxt %d\n",
				w, r, $5 - $1, $6 - $2, $7 - $3, $8 - $4
		}'
		mark end "$w" "$r"
		r=$((r + 1))
	done
done

echo "L2-INFO max_sample_rate_after $(cat /proc/sys/kernel/perf_event_max_sample_rate)"
echo "L2-INFO slow_pmis $(dmesg | grep -c 'perf: interrupt took too long')"
# The guest kernel's own verdict: any warning it printed, by name.
dmesg | grep -E 'WARNING:|BUG:|Oops' | sed 's/^/L2-DMESG /'
echo "L2-DONE"
# -no-reboot: the reset ends QEMU.
reboot -f
