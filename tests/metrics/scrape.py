"""`mailsuspend metrics` read through a real Prometheus parser
(prometheus_client, Debian's python3-prometheus-client), as node_exporter's
textfile collector and Prometheus would read it."""
import os
import subprocess
import tempfile

from prometheus_client.parser import text_string_to_metric_families

# Every family the exporter promises (README, "Metrics"), with its type.
FAMILIES = {
    "mailsuspend_store_up": "gauge",
    "mailsuspend_suspended_targets": "gauge",
    "mailsuspend_store_generation": "gauge",
    "mailsuspend_store_capacity_targets": "gauge",
    "mailsuspend_store_records": "gauge",
    "mailsuspend_store_fill_ratio": "gauge",
    "mailsuspend_store_arena_fill_ratio": "gauge",
    "mailsuspend_counters_up": "gauge",
    "mailsuspend_logins_denied": "counter",
    "mailsuspend_sessions_ended": "counter",
    "mailsuspend_sends_refused": "counter",
    "mailsuspend_received": "counter",
    "mailsuspend_auto_suspensions": "counter",
    "mailsuspend_spam_reports": "counter",
    "mailsuspend_fail_policy_decisions": "counter",
    "mailsuspend_last_sweep_timestamp_seconds": "gauge",
}


class Scrape:
    """One export: value(sample name, **labels), families by name."""

    def __init__(self, text):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for family in self.families.values():
            for s in family.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            raise AssertionError(f"no sample {name}{labels} in:\n{self.text}")
        return self.samples[key]


def scrape(cli, config, textfile=False):
    """Runs the exporter (stdout, or --textfile into a temporary directory)
    and parses what it wrote."""
    if not textfile:
        out = subprocess.run([cli, "--config", config, "metrics"], capture_output=True, text=True,
                             timeout=60, check=True)
        return Scrape(out.stdout)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([cli, "--config", config, "metrics", "--textfile", d], capture_output=True,
                       text=True, timeout=60, check=True)
        names = os.listdir(d)
        assert names == ["mailsuspend.prom"], names  # no temporary file left behind
        with open(os.path.join(d, "mailsuspend.prom")) as f:
            return Scrape(f.read())


def changes(before, after):
    """{(sample name, label): delta} of every counter sample that moved.
    label: the value of its one label (service, mode, reason, cause), or
    "k=v,k=v" for several, "" for none."""
    moved = {}
    for key, value in after.samples.items():
        name, labels = key
        family = name[:-len("_total")] if name.endswith("_total") else name
        if family not in after.families or after.families[family].type != "counter":
            continue
        delta = value - before.samples.get(key, 0)
        if delta:
            label = labels[0][1] if len(labels) == 1 else ",".join(f"{k}={v}" for k, v in labels)
            moved[(name, label)] = delta
    return moved
