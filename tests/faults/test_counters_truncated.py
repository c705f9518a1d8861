#!/usr/bin/env python3
"""The rate counters file truncated in place under a running real Exim
(issue 12 item 4).

    test_counters_truncated.py --cli C --so S --snippets D

Every Exim process maps <store>/counters.  Truncated in place, the pages
past the new end would raise SIGBUS ("local_scan() function crashed with
signal 7", a 421 for every submission).  Now: submissions keep being
answered (messages pass uncounted, logged), `mailsuspend check` reports the
file, and a good file renamed into place is picked up without restarting
Exim: the limit is enforced again.
"""
import os
import shutil
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "exim"))

import eximtest  # noqa: E402
import faults  # noqa: E402
import policytest as pt  # noqa: E402
from eximtest import Env, reply_text  # noqa: E402

LIMIT = 2
# Changed from the defaults: a small limit so the test sees counting work.
CONF = f"""
limits: {{ messages_per_day = {LIMIT}; suspend_for = "1h"; }};
spam: {{ sendmail_command = "{{dir}}/notice-mta -t -oi"; }};
"""
CRASH = "crashed with signal"


class CountersTruncated(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env("counters-truncated", ms_extra=CONF)
        try:
            pt.write_notice_mta(cls.env)
            cls.env.start_daemon()
        except BaseException:
            cls.env.stop()
            raise
        cls.counters = os.path.join(cls.env.dir, "store", "counters")

    @classmethod
    def tearDownClass(cls):
        panic = cls.env.panic_log()
        cls.env.stop()
        if panic:
            raise AssertionError(f"Exim wrote a panic log:\n{panic}")

    def submit(self, user, subject, source="127.0.0.31"):
        return self.env.send(user, ["zed@example.com"], user=user, source=source, subject=subject)

    def keep_good_copy(self):
        """A copy of the counters file as init made it, to rename into place."""
        good = self.counters + ".good"
        shutil.copy2(self.counters, good)
        st = os.stat(self.counters)
        os.chown(good, st.st_uid, st.st_gid)
        return good

    def put_back(self, good):
        os.rename(good, self.counters)
        faults.settle()

    def message(self, client, sender, subject):
        self.assertEqual(client.mail(sender)[0], 250)
        self.assertEqual(client.rcpt("zed@example.com")[0], 250)
        return client.data(f"From: <{sender}>\r\nTo: zed@example.com\r\nSubject: {subject}\r\n\r\nhello\r\n")

    def test_cut_short_in_the_middle_of_a_session(self):
        """Exim puts its own SIGBUS handler in place for local_scan and the
        default one after it: the module puts the core's guard back in both
        places.  Before, the file cut short between RCPT and DATA gave "local_scan()
        function crashed with signal 7" (451), and cut short after a first
        message, the second message's MAIL FROM killed the process."""
        good = self.keep_good_copy()
        client = self.env.smtp("127.0.0.32", user="dave@example.com")
        try:
            self.assertEqual(self.message(client, "dave@example.com", "counted")[0], 250)
            os.truncate(self.counters, 0)  # after a local_scan: Exim's default SIGBUS handler now
            self.assertEqual(self.message(client, "dave@example.com", "after-local-scan")[0], 250)
        finally:
            client.close()
            self.put_back(good)

        good = self.keep_good_copy()
        client = self.env.smtp("127.0.0.33", user="erin@example.com")
        try:
            self.assertEqual(client.mail("erin@example.com")[0], 250)
            self.assertEqual(client.rcpt("zed@example.com")[0], 250)
            os.truncate(self.counters, 0)  # the first touch is in local_scan, under Exim's handler
            reply = client.data("Subject: in-local-scan\r\n\r\nhello\r\n")
            self.assertEqual(reply[0], 250, reply)
            client.quit()
        finally:
            client.close()
            self.put_back(good)
        self.assertNotIn(CRASH, self.env.mainlog())
        self.assertTrue(self.env.wait_log(r"mailsuspend: rate limits not counted: .*counters", count=2))

    def test_truncated_in_place_then_replaced(self):
        self.assertEqual(self.submit("carol@example.com", "warm-up").data[0], 250)
        good = self.keep_good_copy()

        os.truncate(self.counters, os.path.getsize(self.counters) // 3)
        faults.settle()
        for n in range(LIMIT + 2):  # past the limit: nothing is counted, nothing crashes
            out = self.submit("alice@example.com", f"while-truncated-{n}")
            self.assertEqual(out.data[0], 250, out)
        self.assertNotIn(CRASH, self.env.mainlog())
        self.assertTrue(self.env.wait_log(r"mailsuspend: rate limits not counted: .*counters"))

        res = self.env.cli("check", check=False)
        self.assertEqual(res.returncode, 1, res)
        self.assertIn("counters", res.stderr)

        # A good file renamed into place: counted again without a restart.
        tmp = self.counters + ".tmp"
        shutil.copy2(good, tmp)
        st = os.stat(good)
        os.chown(tmp, st.st_uid, st.st_gid)  # as init made it: write_group's
        os.rename(tmp, self.counters)
        faults.settle()
        for n in range(LIMIT):
            out = self.submit("bob@example.com", f"after-{n}")
            self.assertEqual(out.data[0], 250, out)
        crossing = self.submit("bob@example.com", "crossing")
        self.assertEqual(crossing.data[0], 550, crossing)
        self.assertEqual(reply_text(crossing.data), "5.7.13 " + pt.RATE_TEXT)
        self.assertTrue(pt.status(self.env, "bob@example.com")["services"]["send"]["suspended"])
        self.assertNotIn(CRASH, self.env.mainlog())
        self.env.cli("check")


if __name__ == "__main__":
    eximtest.main()
