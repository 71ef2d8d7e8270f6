#!/bin/sh
# SPDX-License-Identifier: MIT
# bench_httpd.sh - requests/s of examples/httpd against nginx on a 1 KiB file,
# keep-alive, both with one worker, same machine, same run.
#   tests/bench/bench_httpd.sh [build-dir] [seconds]   (default: build, 5)
# Needs wrk; nginx (Debian nginx-light) is skipped when missing.
set -eu
build=${1:-build}
secs=${2:-5}
httpd=$build/examples/httpd
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)"; exit 1; }
[ -x "$httpd" ] || { echo "no $httpd: build first"; exit 1; }
dir=$(mktemp -d)
chmod 755 "$dir"
pids=
trap 'for p in $pids; do kill $p 2>/dev/null || true; done; rm -rf "$dir"' EXIT INT TERM
mkdir "$dir/www"
head -c 1024 /dev/urandom | base64 -w 64 | head -c 1024 > "$dir/www/file.txt"
chmod -R a+rX "$dir/www"

run_wrk() { # name url -> prints req/s; checks for socket errors
    out=$(wrk -t 2 -c 50 -d "${secs}s" "$2")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    errs=$(echo "$out" | grep -c "Socket errors" || true)
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    printf '%-8s %12s req/s' "$1" "$rps"
    [ "$errs" -eq 0 ] || printf '   %s' "$(echo "$out" | grep 'Socket errors')"
    [ -z "$non2xx" ] || printf '   non-2xx: %s' "$non2xx"
    echo
    eval "rps_$1=$rps"
}

# IPv4 like nginx below: a dual-stack IPv6 socket costs the kernel more.
"$httpd" -p 0 -t 1 -b 127.0.0.1 "$dir/www" > "$dir/httpd.out" 2>&1 &
pids="$pids $!"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$(sed -n 's/.* on port \([0-9]*\).*/\1/p' "$dir/httpd.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$dir/httpd.out"; exit 1; }
curl -sf "http://127.0.0.1:$port/file.txt" | cmp - "$dir/www/file.txt"
run_wrk httpd "http://127.0.0.1:$port/file.txt"

nginx=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
if [ -n "$nginx" ]; then
    nport=$((port + 1))
    cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$nport; root $dir/www; }
}
CONF
    "$nginx" -c "$dir/nginx.conf" -p "$dir" 2>"$dir/nginx.start" &
    pids="$pids $!"
    sleep 0.5
    curl -sf "http://127.0.0.1:$nport/file.txt" | cmp - "$dir/www/file.txt"
    run_wrk nginx "http://127.0.0.1:$nport/file.txt"
    awk -v a="$rps_httpd" -v b="$rps_nginx" 'BEGIN { printf "ratio httpd/nginx %.2f\n", a / b }'
else
    echo "nginx not found (apt-get install nginx-light): no comparison"
fi
