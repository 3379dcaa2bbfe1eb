#!/usr/bin/env python3
"""traceparent injection on a proxy chain: nginx proxy_pass (keep-alive
upstream) -> nginx, wrk -t1 -c8 on the proxy, rounds interleaved: no agent,
agent with --context-propagation disabled, agent with all. Prints one JSON
line per run: req/s, non-2xx responses, and for each of the agent's
programs the BPF ns per request and per run, and runs per request (kernel.bpf_stats_enabled on during the load only,
restored after).

Usage (as root, under the e2e lock on a shared machine):
  flock /tmp/ratatosk-e2e.lock bench/inject_chain.py target/debug/ratatosk [ROUNDS]
"""
import json, os, re, signal, socket, subprocess, sys, tempfile, time
AGENT = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
DUR = 5
def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
d = tempfile.mkdtemp(prefix="chain-"); os.chmod(d, 0o755)
pa, pb = free(), free()
def conf(name, body):
    p = f"{d}/{name}.conf"
    open(p, "w").write(f"""worker_processes 1; daemon off; pid {d}/{name}.pid; error_log {d}/{name}.err;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/{name}.cb; proxy_temp_path {d}/{name}.pt;
 fastcgi_temp_path {d}/{name}.ft; uwsgi_temp_path {d}/{name}.ut; scgi_temp_path {d}/{name}.st;
 {body} }}""")
    return p
cb = conf("b", f"server {{ listen 127.0.0.1:{pb}; location / {{ return 200 'ok'; }} }}")
ca = conf("a", f"upstream up {{ server 127.0.0.1:{pb}; keepalive 16; }} server {{ listen 127.0.0.1:{pa}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}")
nb = subprocess.Popen(["nginx", "-c", cb]); na = subprocess.Popen(["nginx", "-c", ca])
time.sleep(1)
def progs():
    out = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show"]))
    return {p["id"]: (p.get("name", ""), p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in out}
def wrk():
    o = subprocess.check_output(["wrk", "-t1", "-c8", f"-d{DUR}", f"http://127.0.0.1:{pa}/"], text=True)
    reqs = int(re.search(r"(\d+) requests in", o).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
    return reqs, int(errs.group(1)) if errs else 0
old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
res = []
try:
    subprocess.run(["wrk", "-t1", "-c8", "-d1", f"http://127.0.0.1:{pa}/"], capture_output=True)
    for r in range(ROUNDS):
        for mode in ["none", "disabled", "all"]:
            ag = None
            if mode != "none":
                ag = subprocess.Popen([AGENT, "--open-port", f"{pa},{pb}", "--context-propagation", mode],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                t0 = time.time()
                while time.time() - t0 < 60:
                    line = ag.stderr.readline()
                    if " ready" in line or not line:
                        break
                time.sleep(1)
            open("/proc/sys/kernel/bpf_stats_enabled", "w").write("1")
            before = progs()
            reqs, errs = wrk()
            after = progs()
            open("/proc/sys/kernel/bpf_stats_enabled", "w").write(old)
            per, calls = {}, {}
            for pid, (name, rt, cnt) in after.items():
                b = before.get(pid, (name, 0, 0))
                if cnt - b[2] > 0 and ag is not None:
                    per[name] = per.get(name, 0) + (rt - b[1])
                    calls[name] = calls.get(name, 0) + (cnt - b[2])
            if ag:
                ag.send_signal(signal.SIGTERM); ag.wait(20)
            row = {"mode": mode, "round": r, "rps": reqs / DUR, "non2xx": errs,
                   "bpf_ns_per_req": {k: round(v / reqs, 1) for k, v in per.items() if v > 0},
                   "bpf_ns_per_call": {k: round(v / calls[k], 1) for k, v in per.items() if v > 0},
                   "calls_per_req": {k: round(c / reqs, 2) for k, c in calls.items()}}
            print(json.dumps(row), flush=True)
            res.append(row)
finally:
    open("/proc/sys/kernel/bpf_stats_enabled", "w").write(old)
    na.send_signal(signal.SIGQUIT); nb.send_signal(signal.SIGQUIT)
    na.wait(10); nb.wait(10)
