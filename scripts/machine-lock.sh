#!/bin/bash
# Machine lock with a turnstile, used to run benchmarks alone on a machine that several engineers
# (or test runs) share; a bench waiting for the machine is not starved by test runs.
#   scripts/machine-lock.sh test  <cmd...>   shared: any number at once, none while a bench runs or waits
#   scripts/machine-lock.sh bench <cmd...>   exclusive: waits for running tests, blocks new ones meanwhile
mode=$1; shift
case "$mode" in
  test)  flock /tmp/orghub-turnstile.lock true && exec flock -s /tmp/orghub-machine.lock "$@" ;;
  bench) exec flock -x /tmp/orghub-turnstile.lock flock -x /tmp/orghub-machine.lock "$@" ;;
  *) echo "usage: scripts/machine-lock.sh test|bench <cmd...>" >&2; exit 2 ;;
esac
