#!/usr/bin/env bash
# Helpers the cluster scripts share (sourced, never run). The sourcing script defines
# `say MESSAGE...`, its own log line with its own prefix.

# wait_until WHAT BUDGET_S CMD...: poll CMD until it succeeds, at most BUDGET_S from now; on
# running out, say "WHAT after BUDGET_S s" and fail.
wait_until() {
  local what=$1 budget=$2 start=$SECONDS
  shift 2
  until "$@"; do
    if (( SECONDS - start >= budget )); then
      say "$what after ${budget} s"
      return 1
    fi
    sleep 0.5
  done
}
