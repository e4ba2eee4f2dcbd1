#!/usr/bin/env python3
"""A fleet of Oneiric services on one signed manifest, on this machine (issue 19).

One nginx origin on loopback (a private configuration: its own prefix, port and access log;
ETag and Last-Modified on, as Debian's nginx serves static files) and N services, each with its
own directories, port, machine id and a 1 s refresh interval. The run:

  1. starts the origin with a signed manifest (serial 1) and the fleet; waits for every host;
  2. lets it refresh for a while (every answer a 304), then publishes serial 2 and polls each
     host's /v1/status until it serves serial 2: convergence p50/p99/max after the publish;
  3. rewrites every host's remote.yml to refresh_splay 0 (each host reloads it on its own
     refresh) and measures the same window again: the origin's load without splay;
  4. moves every host to an hour's interval, publishes serial 3 and fans out `oneiric reload`
     (the push path: what `systemctl reload oneiric` runs): every host serves it at once;
  5. one more host, on an origin of its own that then goes away: it keeps serving, and its
     /metrics satisfy the "not fetched" alert of packaging/examples/oneiric-alerts.yml;
  6. checks that every metric and label the Grafana dashboard queries exists in /metrics.

From the origin's access log: peak requests in one second (and in 100 ms), the share of 304
answers, bytes served; per host, the shortest gap between two fetches. The fleet's memory is
the sum of the services' RSS. Everything is on 127.0.0.1, bounded in time (--deadline), and
every process started here is stopped on exit, whatever happens.

Prints `PASS name` / `FAIL name: reason` for each assertion (with --assert) and writes the
figures as JSON (--out). Exit 0 when every assertion held, 1 otherwise.
"""

import argparse
import concurrent.futures
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MANIFEST_ENTRIES = 20


def log(msg):
    print(f"[fleet] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def manifest_yaml(serial):
    out = ["source: fleet", "version: 1", "entries:"]
    for i in range(MANIFEST_ENTRIES):
        out.append(
            f"- domain: adapter\n"
            f"  key: key-{i:03d}\n"
            f"  provider: release-{serial}\n"
            f"  factory: builtin:memory\n"
            f"  priority: {i}"
        )
    return "\n".join(out) + "\n"


class Fleet:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin
        self.dir = tempfile.mkdtemp(prefix="oneiric-fleet-")
        # nginx's workers run as an unprivileged user: the document root must be readable.
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.hosts = []
        self.nginx = None
        self.www = os.path.join(self.dir, "www")
        os.makedirs(self.www)
        key = os.path.join(self.dir, "signing.key")
        r = subprocess.run([self.bin, "manifest", "keygen", "--out", key],
                           capture_output=True, text=True, check=True)
        self.key = key
        self.public = r.stdout.strip().splitlines()[-1]

    # --- the manifest and its origin -----------------------------------------------------

    def signed(self, serial):
        out = os.path.join(self.dir, f"signed-{serial}.json")
        if os.path.exists(out):
            return out
        plain = os.path.join(self.dir, f"plain-{serial}.yaml")
        with open(plain, "w") as f:
            f.write(manifest_yaml(serial))
        subprocess.run(
            [self.bin, "--config", os.path.join(self.dir, "none"), "manifest", "sign", plain,
             "--key", self.key, "--serial", str(serial), "--expires-in", "86400", "-o", out],
            capture_output=True, text=True, check=True)
        subprocess.run(
            [self.bin, "--config", os.path.join(self.dir, "none"), "manifest", "pack", out,
             "-o", out], capture_output=True, text=True, check=True)
        return out

    def publish(self, serial, into=None):
        """Atomically replaces the served manifest (as a deployment would)."""
        src = self.signed(serial)
        dest = os.path.join(into or self.www, "manifest.json")
        tmp = dest + ".tmp"
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)

    def start_origin(self):
        self.origin_port = free_port()
        prefix = os.path.join(self.dir, "nginx")
        os.makedirs(os.path.join(prefix, "logs"))
        self.access_log = os.path.join(prefix, "logs", "access.log")
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format fleet '$msec $status $body_bytes_sent $http_x_oneiric_host';
    access_log {self.access_log} fleet;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/json json; }}
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{self.origin_port};
        root {self.www};
        etag on;
        if_modified_since exact;
    }}
}}
""")
        self.nginx = subprocess.Popen(["nginx", "-p", prefix, "-c", conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.nginx)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                status, _ = http_get(self.url())
                if status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not answer within 10 s")

    def url(self):
        return f"http://127.0.0.1:{self.origin_port}/manifest.json"

    # --- the services --------------------------------------------------------------------

    def remote_yml(self, host, splay, interval=None):
        interval = interval or self.args.interval
        with open(os.path.join(host["etc"], "remote.yml"), "w") as f:
            f.write(
                f"manifest_url: {host['url']}\n"
                "allow_http: true\n"
                f"refresh_interval: {interval}\n"
                f"refresh_splay: {splay}\n"
                f"refresh_max_interval: {max(interval, self.args.max_interval)}\n"
                # The host's name in the origin's log, sent only to the origin.
                "auth: {header_name: X-Oneiric-Host}\n"
                "max_retries: 0\n"
                "circuit_breaker_threshold: 1000\n")

    def add_host(self, name, url, splay):
        base = os.path.join(self.dir, "hosts", name)
        host = {"name": name, "url": url, "etc": os.path.join(base, "etc"),
                "port": free_port(), "base": base}
        for d in ("etc", "state", "cache", "run"):
            os.makedirs(os.path.join(base, d))
        with open(os.path.join(base, "machine-id"), "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        self.remote_yml(host, splay)
        with open(os.path.join(host["etc"], "http.yml"), "w") as f:
            f.write(f"port: {host['port']}\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ONEIRIC_CONFIG": host["etc"],
            "ONEIRIC_STATE_DIR": os.path.join(base, "state"),
            "ONEIRIC_CACHE_DIR": os.path.join(base, "cache"),
            "ONEIRIC_RUNTIME_DIR": os.path.join(base, "run"),
            "ONEIRIC_MACHINE_ID_PATH": os.path.join(base, "machine-id"),
            "ONEIRIC_TRUSTED_PUBLIC_KEYS": self.public,
            "ONEIRIC_REMOTE__SIGNATURE_REQUIRED": "true",
            "ONEIRIC_REMOTE_TOKEN": name,
            "ONEIRIC_LOG_FORMAT": "json",
            "ONEIRIC_LOG_LEVEL": "warning",
        }
        logf = open(os.path.join(base, "service.log"), "ab")
        host["env"] = env
        host["proc"] = subprocess.Popen([self.bin, "orchestrate"], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=logf)
        logf.close()
        self.procs.append(host["proc"])
        return host

    def wait_ready(self, hosts, timeout):
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending and time.monotonic() < deadline:
            still = []
            for h in pending:
                if h["proc"].poll() is not None:
                    raise RuntimeError(f"{h['name']} exited with {h['proc'].returncode}")
                try:
                    status, _ = http_get(f"http://127.0.0.1:{h['port']}/readyz", 2)
                    if status != 200:
                        still.append(h)
                except OSError:
                    still.append(h)
            pending = still
            if pending:
                time.sleep(0.2)
        if pending:
            raise RuntimeError(f"{len(pending)} host(s) not ready within {timeout} s")

    def status(self, h):
        _, body = http_get(f"http://127.0.0.1:{h['port']}/v1/status", 5)
        return json.loads(body)

    def serving(self, h):
        """(serial, Unix time the served state was published) of a host, or (None, None)."""
        try:
            st = self.status(h)
        except (OSError, ValueError):
            return None, None
        ms = st.get("manifests") or []
        return (ms[0].get("serial") if ms else None), st.get("loaded_at_unix_ms", 0) / 1000

    def interval_of(self, h):
        try:
            _, body = http_get(f"http://127.0.0.1:{h['port']}/metrics", 5)
        except OSError:
            return None
        m = re.search(r"^oneiric_remote_refresh_interval_seconds (\S+)", body.decode(), re.M)
        return float(m.group(1)) if m else None

    def serial_of(self, h):
        return self.serving(h)[0]

    def converge(self, hosts, serial, published, timeout):
        """Polls the hosts (gently: the service's own publish time is what counts) until each
        serves `serial`; seconds from `published` (Unix) to that host's publish, per host."""
        seen = {}
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        deadline = time.time() + timeout
        while len(seen) < len(hosts) and time.time() < deadline:
            pending = [h for h in hosts if h["name"] not in seen]
            for h, (s, at) in zip(pending, pool.map(self.serving, pending)):
                if s == serial:
                    seen[h["name"]] = at - published
            time.sleep(0.5)
        pool.shutdown()
        return seen

    def rss_kib(self):
        total = 0
        for h in self.hosts:
            try:
                with open(f"/proc/{h['proc'].pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the origin's log ----------------------------------------------------------------------


def read_log(path, start, end):
    """Requests between two Unix times: (time, status, bytes, host)."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            t = float(parts[0])
            if start <= t < end:
                out.append((t, int(parts[1]), int(parts[2]), parts[3]))
    return out


def load_figures(reqs, start, end):
    per_s = {}
    per_100ms = {}
    for t, _, _, _ in reqs:
        per_s[int(t)] = per_s.get(int(t), 0) + 1
        per_100ms[int(t * 10)] = per_100ms.get(int(t * 10), 0) + 1
    # Only whole seconds inside the window count for the peak.
    full = [c for s, c in per_s.items() if s >= start and s + 1 <= end]
    return {
        "requests": len(reqs),
        "seconds": round(end - start, 1),
        "peak_per_second": max(full) if full else 0,
        "peak_per_100ms": max(per_100ms.values()) if per_100ms else 0,
        "share_304": round(sum(1 for r in reqs if r[1] == 304) / len(reqs), 4) if reqs else 0,
        "bytes": sum(r[2] for r in reqs),
    }


def min_gaps(reqs):
    by_host = {}
    for t, _, _, h in reqs:
        by_host.setdefault(h, []).append(t)
    gaps = {}
    for h, ts in by_host.items():
        ts.sort()
        if len(ts) > 1:
            gaps[h] = min(b - a for a, b in zip(ts, ts[1:]))
    return gaps


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    return round(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))], 3)


# --- the dashboard -------------------------------------------------------------------------


def dashboard_queries(path):
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dash)
    return out


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                "bool", "and", "or", "unless"}


def check_dashboard(path, metrics_text):
    """Every oneiric_* metric the dashboard queries is exported, with every label it names."""
    series = {}
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
        name = m.group(1)
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        for base in (name, re.sub(r"_(bucket|sum|count)$", "", name)):
            series.setdefault(base, set()).update(labels)
    problems = []
    queries = dashboard_queries(path)
    names_seen = set()
    for q in queries:
        for metric, _, matchers in re.findall(r"\b(oneiric_[a-z0-9_]+)(\{([^}]*)\})?", q):
            names_seen.add(metric)
            if metric not in series:
                problems.append(f"{metric} (in `{q}`) is not in /metrics")
                continue
            for label in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)', matchers):
                # Prometheus adds these when it scrapes.
                if label in ("instance", "job"):
                    continue
                if label not in series[metric]:
                    problems.append(f"{metric} has no label {label} (in `{q}`)")
        # Grouping labels must exist on some oneiric metric of the same query.
        q_metrics = set(re.findall(r"\b(oneiric_[a-z0-9_]+)", q))
        q_labels = set().union(*(series.get(m, set()) for m in q_metrics)) if q_metrics else set()
        for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", q):
            for label in [x.strip() for x in group.split(",") if x.strip()]:
                if label in ("instance", "job") or label in PROMQL_WORDS:
                    continue
                if label not in q_labels:
                    problems.append(f"label {label} (in `{q}`) is on none of {sorted(q_metrics)}")
    return len(queries), sorted(names_seen), problems


# --- the run -------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, name, ok, reason):
        if ok:
            print(f"PASS {name}", flush=True)
            self.passed += 1
        else:
            print(f"FAIL {name}: {reason}", flush=True)
            self.failed += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--splay", type=float, default=0.5)
    ap.add_argument("--max-interval", type=int, default=3)
    ap.add_argument("--window", type=float, default=8.0,
                    help="seconds of steady refreshing measured with and without splay")
    ap.add_argument("--deadline", type=float, default=600.0, help="the whole run, seconds")
    ap.add_argument("--load-allowance", type=float, default=2.0,
                    help="seconds a host may take to load the new manifest once fetched")
    ap.add_argument("--out")
    ap.add_argument("--assert", dest="check", action="store_true")
    args = ap.parse_args()

    t_start = time.monotonic()
    fleet = Fleet(args)
    rep = Report()
    figures = {"n": args.n, "interval_s": args.interval, "splay": args.splay,
               "max_interval_s": args.max_interval, "binary": args.bin}

    # Whatever happens (an exception, SIGTERM from the harness, the deadline), every process
    # started here is stopped.
    def on_signal(signum, _frame):
        raise SystemExit(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(int(args.deadline))
    side = None
    try:
        fleet.publish(1)
        fleet.start_origin()
        log(f"origin: nginx on 127.0.0.1:{fleet.origin_port}; starting {args.n} services")
        t0 = time.monotonic()
        for i in range(args.n):
            fleet.hosts.append(fleet.add_host(f"host-{i:04d}", fleet.url(), args.splay))
        fleet.wait_ready(fleet.hosts, timeout=max(60, args.n))
        figures["start_all_ready_s"] = round(time.monotonic() - t0, 2)
        log(f"{args.n} services ready in {figures['start_all_ready_s']} s")

        # A steady window with splay: every answer is a 304.
        w0 = time.time()
        time.sleep(args.window)
        w1 = time.time()

        # Publish serial 2 and wait until every host serves it.
        fleet.signed(2)  # signed before the clock starts: the publish is the rename alone
        pub_wall = time.time()
        fleet.publish(2)
        bound = args.interval * (1 + args.splay)
        seen = fleet.converge(fleet.hosts, 2, pub_wall, timeout=bound + 30)
        conv = list(seen.values())
        figures["convergence_s"] = {"p50": pct(conv, 50), "p99": pct(conv, 99),
                                    "max": round(max(conv), 3) if conv else None,
                                    "converged": len(conv), "bound_s": bound}
        time.sleep(args.interval * 2)
        c1 = time.time()
        # When each host fetched the new body (its first 200 after the publish), from the
        # origin's log: the schedule's part of the convergence, without the load.
        # nginx logs `$msec` from its cached time (taken when its event loop woke), so a
        # request that arrived just before the rename and opened the new file is logged a few
        # milliseconds before `pub_wall`. The steady window before it is all 304s, so a 200 in
        # the half second before the publish can only be the new body: counted as at 0 s.
        fetched = {}
        for t, status, _, h in read_log(fleet.access_log, pub_wall - 0.5, c1):
            if status == 200 and h not in fetched:
                fetched[h] = max(0.0, t - pub_wall)
        fv = list(fetched.values())
        figures["fetch_after_publish_s"] = {"p50": pct(fv, 50), "p99": pct(fv, 99),
                                            "max": round(max(fv), 3) if fv else None,
                                            "hosts": len(fv)}
        log(f"convergence (served): {figures['convergence_s']}; "
            f"fetched: {figures['fetch_after_publish_s']}")
        figures["fleet_rss_kib"] = fleet.rss_kib()

        # The same fleet without splay: each host picks up remote.yml on its next refresh.
        for h in fleet.hosts:
            fleet.remote_yml(h, 0)
        time.sleep(args.interval * 4)
        n0 = time.time()
        time.sleep(args.window)
        n1 = time.time()

        # The push path: hosts on an hour's interval get a new serial only because the
        # operator fans out `oneiric reload` (what `systemctl reload oneiric` runs).
        for h in fleet.hosts:
            fleet.remote_yml(h, args.splay, interval=3600)
        # Each host reloads remote.yml on its next refresh; a busy one takes longer.
        slow = list(fleet.hosts)
        limit = time.monotonic() + 60
        while slow and time.monotonic() < limit:
            time.sleep(0.5)
            slow = [h for h in slow if fleet.interval_of(h) != 3600]
        time.sleep(args.interval * 2)
        fleet.signed(3)
        push_wall = time.time()
        fleet.publish(3)

        def reload(h):
            return subprocess.run([fleet.bin, "reload"], env=h["env"], capture_output=True,
                                  timeout=120).returncode
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(reload, fleet.hosts))
        push_done = time.time() - push_wall
        pushed = fleet.converge(fleet.hosts, 3, push_wall, timeout=30)
        pv = list(pushed.values())
        own = [r for r in read_log(fleet.access_log, push_wall - args.interval * 2, push_wall)]
        figures["push"] = {"reload_exit_codes": sorted(set(codes)), "fan_out_s": round(push_done, 2),
                           "served_p50_s": pct(pv, 50), "served_max_s": round(max(pv), 3) if pv else None,
                           "converged": len(pv), "fetches_before_push": len(own)}
        log(f"push: {figures['push']}")

        # One host on an origin of its own, which then goes away.
        side_dir = os.path.join(fleet.dir, "side")
        os.makedirs(side_dir)
        fleet.publish(2, into=side_dir)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=side_dir, **kw)

            def log_message(self, *a):
                pass
        side = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=side.serve_forever, daemon=True).start()
        lone = fleet.add_host("host-lone", f"http://127.0.0.1:{side.server_port}/manifest.json",
                              args.splay)
        fleet.wait_ready([lone], timeout=60)
        side.shutdown()
        side.server_close()
        down_at = time.time()
        rules = open(os.path.join(args.repo, "packaging/examples/oneiric-alerts.yml")).read()
        m = re.search(r"> *on\(instance, *job\) *group_left\(\) *\((\d+) *\* *"
                      r"oneiric_remote_refresh_max_interval_seconds\)", rules)
        factor = int(m.group(1)) if m else None
        alert = {"fires": False}
        if factor is not None:
            limit = time.monotonic() + factor * args.max_interval + 15
            while time.monotonic() < limit:
                _, body = http_get(f"http://127.0.0.1:{lone['port']}/metrics")
                text = body.decode()
                last = re.search(r"^oneiric_remote_last_success_timestamp_seconds\{[^}]*\} (\S+)",
                                 text, re.M)
                maxi = re.search(r"^oneiric_remote_refresh_max_interval_seconds (\S+)", text, re.M)
                if last and maxi:
                    age = time.time() - float(last.group(1))
                    alert = {"age_s": round(age, 1), "threshold_s": factor * float(maxi.group(1)),
                             "fires": age > factor * float(maxi.group(1))}
                    if alert["fires"]:
                        break
                time.sleep(0.5)
        status, _ = http_get(f"http://127.0.0.1:{lone['port']}/v1/resolve/adapter/key-000")
        lone_serial = fleet.serial_of(lone)
        figures["origin_down"] = dict(alert, resolve_status=status, serial=lone_serial,
                                      seconds_down=round(time.time() - down_at, 1))
        metrics_text = body.decode()

        dash = os.path.join(args.repo, "packaging/examples/oneiric-fleet-dashboard.json")
        nq, names, problems = check_dashboard(dash, metrics_text)
        figures["dashboard"] = {"queries": nq, "metrics": names, "problems": problems}

        fleet.stop()
        time.sleep(0.2)
        splay_reqs = read_log(fleet.access_log, w0, w1)
        nosplay_reqs = read_log(fleet.access_log, n0, n1)
        conv_reqs = read_log(fleet.access_log, pub_wall, c1)
        all_reqs = read_log(fleet.access_log, 0, time.time() + 1)
        first = min((r[0] for r in all_reqs), default=0)
        figures["with_splay"] = load_figures(splay_reqs, w0, w1)
        figures["without_splay"] = load_figures(nosplay_reqs, n0, n1)
        figures["publish_window"] = load_figures(conv_reqs, pub_wall, c1)
        figures["whole_run"] = load_figures(all_reqs, int(first), time.time() + 1)
        # Gaps only while every host ran one cadence (the first window and the convergence).
        gaps = min_gaps(read_log(fleet.access_log, w0, c1))
        figures["min_gap_between_fetches_s"] = round(min(gaps.values()), 3) if gaps else None
        per_host = {}
        for r in splay_reqs:
            per_host[r[3]] = per_host.get(r[3], 0) + 1
        figures["max_fetches_of_a_host_in_window"] = max(per_host.values()) if per_host else 0
        figures["hosts_fetching"] = len(gaps)
        figures["run_s"] = round(time.monotonic() - t_start, 1)
        log(json.dumps(figures, indent=1))

        if args.check:
            n, f, i = args.n, args.splay, args.interval
            limit = 2 * n / (i * f) + 5
            rep.check("fleet-peak-with-splay",
                      figures["with_splay"]["peak_per_second"] < limit,
                      f"peak {figures['with_splay']['peak_per_second']} req/s >= {limit:.0f}")
            rep.check("fleet-converged", len(conv) == n, f"{len(conv)} of {n} hosts served serial 2")
            # The schedule's promise: each host fetches the new body within one interval
            # plus its splay (the log's times add connection setup: 0.25 s of slack).
            worst_fetch = max(fv) if len(fv) == n else float("inf")
            rep.check("fleet-fetch-within-interval-plus-splay", worst_fetch <= bound + 0.25,
                      f"slowest fetch {worst_fetch:.2f} s after the publish > interval + splay "
                      f"({bound:.2f} s) + 0.25 s ({len(fv)} of {n} hosts fetched)")
            # Serving it adds the host's load of the new manifest: a few hundred ms of a debug
            # build, more while N of them load at once on two busy cores.
            worst = max(conv) if conv else float("inf")
            rep.check("fleet-convergence-bound", worst <= bound + args.load_allowance,
                      f"slowest host served serial 2 {worst:.2f} s after the publish > interval "
                      f"+ splay ({bound:.2f} s) + {args.load_allowance} s for the load")
            gap = figures["min_gap_between_fetches_s"]
            most = figures["max_fetches_of_a_host_in_window"]
            # Over the window no host makes more requests than the window holds intervals
            # (plus the one at its start). Between two requests, the scheduler starts them at
            # least 0.95 interval apart; the origin's arrival times add each process's delay
            # before its request leaves (up to 0.15 s seen on two busy cores): 0.8 interval.
            rep.check("fleet-no-host-faster-than-interval",
                      gap is not None and gap >= 0.8 * i and len(gaps) >= n
                      and most <= args.window / i + 1,
                      f"shortest gap {gap} s (interval {i} s), {len(gaps)} hosts fetched, "
                      f"busiest host {most} requests in {args.window} s")
            rep.check("fleet-304-share", figures["with_splay"]["share_304"] >= 0.99,
                      f"only {figures['with_splay']['share_304']:.2%} 304 in the steady window")
            pu = figures["push"]
            rep.check("fleet-push-reload", pu["reload_exit_codes"] == [0] and pu["converged"] == n
                      and pu["fetches_before_push"] == 0,
                      f"oneiric reload fan-out: {pu}")
            od = figures["origin_down"]
            rep.check("fleet-origin-down-keeps-serving",
                      od["resolve_status"] == 200 and od["serial"] == 2,
                      f"resolve {od['resolve_status']}, serial {od['serial']}")
            rep.check("fleet-origin-down-alert", od.get("fires") is True,
                      f"not-fetched alert condition not met: {od}")
            rep.check("dashboard-metrics-exist", nq > 0 and not problems,
                      "; ".join(problems) or "no queries found")
    finally:
        signal.alarm(0)
        fleet.stop()
        if side is not None:
            side.server_close()
        if args.out:
            with open(args.out, "w") as f:
                json.dump(figures, f, indent=1)
        if not os.environ.get("FLEET_KEEP"):
            fleet.cleanup()
        else:
            log(f"kept {fleet.dir}")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
