#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Shows that the property tests guard what the cache policy promises: each
# patch in tests/mutants/ removes one decision from the model, and the
# property test it names must fail on the mutated model.  A patch that no
# longer applies, or a mutant that survives, fails this script.
#
# When src/model/cache.rs changes, a patch may need to be made again: edit a
# copy of the file as the patch's header says, `diff -u a/src/model/cache.rs
# b/src/model/cache.rs`, and keep the header (SPDX, what it removes, and the
# "fails:" line naming the property test that must fail).
set -euo pipefail
. "$(dirname "$0")/env.sh"
export PATH=$HOME/.cargo/bin:$PATH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One target directory for every mutant: only the model's files differ.
export CARGO_TARGET_DIR=$VPMU_TOP/target/mutants
# Enough cases that a mutant is found every time (each kills it in the
# first few dozen cases); fixed so that a run is reproducible.
export PROPTEST_CASES=${PROPTEST_CASES:-500}

bad=0
for patch in "$VPMU_TOP"/tests/mutants/*.patch; do
	name=$(basename "$patch" .patch)
	test=$(sed -n 's/^fails: //p' "$patch")
	rm -rf "$work/tree"
	mkdir "$work/tree"
	cp -r "$VPMU_TOP/Cargo.toml" "$VPMU_TOP/Cargo.lock" "$VPMU_TOP/src" \
		"$VPMU_TOP/tests" "$work/tree/"
	if ! patch -s -p1 --forward --batch -d "$work/tree" <"$patch" >/dev/null; then
		vpmu_log "mutant $name: the patch no longer applies"
		bad=1
		continue
	fi
	log=$work/$name.log
	if (cd "$work/tree" && cargo test --release --quiet --test model_props -- \
		--exact "$test") >"$log" 2>&1; then
		vpmu_log "mutant $name SURVIVED: $test passed without the decision"
		bad=1
	elif grep -q "^test $test \.\.\. FAILED\|$test' .*panicked\|^    $test$" "$log"; then
		echo "mutant $name killed by $test:"
		grep -m1 -A3 "Test failed" "$log" | sed 's/^/  /'
	else
		vpmu_log "mutant $name: $test did not run (see below)"
		tail -20 "$log" >&2
		bad=1
	fi
done
exit $bad
