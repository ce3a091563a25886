#!/usr/bin/env bash
# Stop the processes `make demo` started.
cd "$(dirname "$0")/.."
for pidfile in var/run/*.pid; do
  [ -e "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then echo "stopped $(basename "$pidfile" .pid) ($pid)"; fi
  rm -f "$pidfile"
done
