"""Shared by the Exim tests of the automatic policies (issue 5): a
mailsuspend.conf with small limits and short durations, a stand-in for the
local MTA that the AUP notices go through, and readers for what lands in
the store, the audit log and the notices.

The limits are small so a test can cross them with a handful of messages;
suspend_for is seconds, so expiry and escalation can be watched live.  Each
test uses its own mailboxes (SMTP AUTH accepts any id) and its own client
source address (127.0.0.x), so the per-mailbox and per-IP counters of one
test never meet another's.
"""
import email
import email.policy
import json
import os
import time

import eximtest

MESSAGES_PER_DAY = 5
RECIPIENTS_PER_MESSAGE = 3
OFFDOMAIN_PER_DAY = 8
OFFDOMAIN_PER_HOUR_PER_IP = 12
SUSPEND_FOR = 3            # seconds
ESCALATE_AFTER = 2
SPAM_THRESHOLD = 2

RATE_TEXT = ("Permanent Failure: Your ability to send new mail has been suspended as a high "
             "volume of suspicious mail has been sent from your account recently. Please "
             "contact your IT administrator")
RECIPIENTS_TEXT = "Permanent Failure: Too many recipients for one message."
IP_THROTTLED_TEXT = ("Too much mail to other domains from your network address within the last hour. "
                     "Please try again later.")

# {dir} is the test's directory.  The notice "MTA" is a script (the CLI's
# sweep / send-notices runs it as root; Exim never runs it).
POLICY_CONF = f"""
limits: {{
  messages_per_day = {MESSAGES_PER_DAY};
  recipients_per_message = {RECIPIENTS_PER_MESSAGE};
  offdomain_recipients_per_day = {OFFDOMAIN_PER_DAY};
  offdomain_recipients_per_hour_per_ip = {OFFDOMAIN_PER_HOUR_PER_IP};
  suspend_for = "{SUSPEND_FOR}s";
  extend_on_attempt = true;
  escalate_after = {ESCALATE_AFTER};
}};
spam: {{
  threshold = {SPAM_THRESHOLD};
  window = "24h";
  default_abuse_contact = "abuse@example.net";
  abuse_contacts = ( {{ domain = "example.org"; contact = "abuse-org@example.net"; }} );
  evidence_samples = 3;
  sendmail_command = "{{dir}}/notice-mta -t -oi";
}};
"""

NOTICE_MTA = """#!/bin/sh
# Stands for /usr/sbin/sendmail -t -oi: keeps each notice as a file.
umask 022
f={dir}/notices/notice.$$
cat > "$f.tmp" && mv "$f.tmp" "$f.eml"
"""


def write_notice_mta(env):
    """The spam.sendmail_command of POLICY_CONF, in env's directory."""
    script = os.path.join(env.dir, "notice-mta")
    with open(script, "w") as f:
        f.write(NOTICE_MTA.format(dir=env.dir))
    os.chmod(script, 0o755)


def make_env(name):
    """An Env (no daemon yet) with POLICY_CONF and its notice MTA."""
    env = eximtest.Env(name, ms_extra=POLICY_CONF)
    write_notice_mta(env)
    return env


def status(env, target):
    """`mailsuspend status --json` of target, parsed."""
    return json.loads(env.cli("status", target, "--json").stdout)


def send_state(env, target):
    return status(env, target)["services"]["send"]


def audit(env):
    path = os.path.join(env.dir, "audit.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def notices(env, wait_for=0):
    """The AUP notices "sent" so far, parsed; waits (bounded) until there
    are at least wait_for of them."""
    folder = os.path.join(env.dir, "notices")
    deadline = time.monotonic() + eximtest.WAIT
    while True:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".eml"))
        if len(names) >= wait_for or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out = []
    for n in names:
        with open(os.path.join(folder, n), "rb") as f:
            out.append(email.message_from_binary_file(f, policy=email.policy.default))
    return out


def notice_pending(env, mailbox):
    """Whether an AUP notice for mailbox waits for the sweep."""
    return os.path.exists(os.path.join(env.dir, "store", "evidence", mailbox, "notice-pending"))


def sent_notices_for(env, mailbox):
    """The notices that name mailbox, now (no wait: for "none was sent")."""
    return [n for n in notices(env) if mailbox in n.get_body(("plain",)).get_content()]


def notice_for(env, mailbox):
    """The one notice that names mailbox (waits for it); None if none came."""
    deadline = time.monotonic() + eximtest.WAIT
    while time.monotonic() < deadline:
        mine = [n for n in notices(env) if mailbox in n.get_body(("plain",)).get_content()]
        if mine:
            return mine
        time.sleep(0.05)
    return []


def evidence_of(notice):
    """The text of the notice's evidence.txt attachment (None if absent)."""
    for part in notice.iter_attachments():
        if part.get_filename() == "evidence.txt":
            return part.get_content() if isinstance(part.get_content(), str) \
                else part.get_content().decode("utf-8", "replace")
    return None


def sleep_past(epoch, margin=1.2):
    """Sleeps until margin seconds after the epoch time (an expiry)."""
    delay = epoch + margin - time.time()
    if delay > 0:
        time.sleep(delay)
