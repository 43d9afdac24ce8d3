#!/usr/bin/env bash
# Runs every Go native fuzz target under pkg/ (found with go test -list, so a new target is
# picked up without listing it here) for FUZZTIME each (default 4s). Their seed corpora also
# run as plain tests in make test-unit; this adds a bounded search for new inputs. A failing
# input is written to the package's testdata/fuzz/ by go test: commit it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-4s}
targets=$($GO test -list '^Fuzz' ./pkg/... | awk '/^Fuzz/ { names = names " " $1 } /^ok / { if (names != "") print $2 names; names = "" }')
n=0
while read -r pkg names; do
	[[ -n $pkg ]] || continue
	for name in $names; do
		echo "fuzz: $pkg $name ($FUZZTIME)"
		for attempt in 1 2; do
			if $GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/nvmeof-fuzz.$$ 2>&1; then
				break
			fi
			# Go before 1.27 can end a duration-bounded run with a bare "context deadline
			# exceeded" at the -fuzztime boundary on a busy machine (golang/go#75804): no
			# failing input, no panic. Such a run is tried once more; anything else fails.
			if ((attempt == 1)) && grep -q 'context deadline exceeded' /tmp/nvmeof-fuzz.$$ &&
				! grep -q -e 'Failing input written' -e 'panic:' -e '_test.go:[0-9]*:' /tmp/nvmeof-fuzz.$$; then
				echo "fuzz: $name ended at the -fuzztime boundary without a failing input (golang/go#75804); once more"
				continue
			fi
			cat /tmp/nvmeof-fuzz.$$
			rm -f /tmp/nvmeof-fuzz.$$
			exit 1
		done
		n=$((n + 1))
	done
done <<<"$targets"
rm -f /tmp/nvmeof-fuzz.$$
if ((n == 0)); then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz: $n targets, $FUZZTIME each, no failure"
