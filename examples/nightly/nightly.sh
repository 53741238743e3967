#!/usr/bin/env bash
# One night of flatbed on a KVM host, as the configurations beside this script run it (GitHub
# Actions, GitLab CI, a systemd timer). As root, from a checkout of the project:
#
#   examples/nightly/nightly.sh [PATH...] [PYTEST ARGS]     (default: the whole of e2e/)
#
# 1. set-up (host packages, virtualenv, images; skipped when done) and `flatbed check`: stop early,
#    with the fix, on a host that cannot run the provider;
# 2. remove what earlier nights kept: their testbeds (kept when a night failed) older than
#    FLATBED_KEEP_TESTBEDS, their artifact bundles older than FLATBED_KEEP_ARTIFACTS; testbeds in
#    use are refused;
# 3. the document suite, FLATBED_WORKERS testbeds at once; a failing night keeps its testbed for the
#    morning (--destroy=passing) and its bundles in FLATBED_ARTIFACTS_ROOT/<session>/;
# 4. `flatbed leaks` of this night's own testbeds only (a kept one is not a leak);
# 5. reports/ (JUnit XML, HTML) gets a copy of the bundles for the CI server to upload, and the
#    session directory a copy of the reports (for hosts without a CI server).
#
# Environment (defaults): FLATBED_PROVIDER (vagrant), FLATBED_WORKERS (2), FLATBED_SESSION
# (nightly-<date>-<time>), FLATBED_STATE (/var/lib/flatbed/nightly: the nights' own state root, so
# cleaning never touches an engineer's testbed), FLATBED_ARTIFACTS_ROOT (/var/lib/flatbed/artifacts),
# FLATBED_KEEP_TESTBEDS (12h), FLATBED_KEEP_ARTIFACTS (7d). Exit: the suite's, or 1 on a leak.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

provider=${FLATBED_PROVIDER:-vagrant}
workers=${FLATBED_WORKERS:-2}
session=${FLATBED_SESSION:-nightly-$(date +%Y%m%d-%H%M%S)}
export FLATBED_STATE=${FLATBED_STATE:-/var/lib/flatbed/nightly}
artifacts=${FLATBED_ARTIFACTS_ROOT:-/var/lib/flatbed/artifacts}/$session
flatbed=.venv/bin/flatbed
say() { printf '[nightly] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { say "needs root (testbeds make namespaces, containers and VMs)"; exit 2; }
./run setup --provider "$provider"
"$flatbed" check --provider "$provider" --workers "$workers"

say "removing what earlier nights kept"
"$flatbed" clean --kept-older-than "${FLATBED_KEEP_TESTBEDS:-12h}" \
  --artifacts-older-than "${FLATBED_KEEP_ARTIFACTS:-7d}"

parallel=()
[ "$workers" -gt 1 ] && parallel=(-n "$workers")
say "session $session: the suite on $provider, $workers testbed(s) at once"
rc=0
./run e2e "$@" --provider "$provider" "${parallel[@]}" --destroy=passing --artifacts "$artifacts" || rc=$?

say "leaks of this night's testbeds"
"$flatbed" leaks --session "$artifacts" || { [ "$rc" -ne 0 ] || rc=1; }

rm -rf reports/bundles
mkdir -p reports/bundles "$artifacts"
cp -a "$artifacts/." reports/bundles/
mkdir -p "$artifacts/reports"
find reports -maxdepth 1 -type f -exec cp -a {} "$artifacts/reports/" \;
say "reports: $PWD/reports, bundles: $artifacts (exit $rc)"
exit "$rc"
