// Exim's spool header files as `mailsuspend held` reads them: the format
// Exim 4.96 writes (the integration test tests/exim/test_hold.py reads real ones).
#include <gtest/gtest.h>

#include "held_mail.hpp"

using namespace mailsuspend;

namespace {

// A submission held for alice: ACL variables whose values span lines, a
// delivered recipient in the tree, a folded Subject and a deleted header.
const char* const kHeld =
    "1xZVRW-00082M-27-H\n"
    "Debian-exim 102 105\n"
    "<alice@example.com>\n"
    "1796399006 0\n"
    "-received_time_usec .659948\n"
    "-host_address [127.0.0.1]:54117\n"
    "-aclm _mailsuspend 0\n"
    "\n"
    "-aclc _note 11\n"
    "two\nlines!!\n"
    "--auth_id alice@example.com\n"
    "-local_scan mailsuspend-held alice@example.com\n"
    "NN bob@example.net\n"
    "3\n"
    "bob@example.net\n"
    "carol@example.org 12,0#1\n"
    "zed@example.com\n"
    "\n"
    "026F From: <alice@example.com>\n"
    "025* X-Dropped: by local_scan\n"
    "027  Subject: quarterly\n"
    "\treport\n";

}  // namespace

TEST(HeldMail, ParsesASpoolHeaderFileOfAHeldMessage) {
    HeldMessage m;
    ASSERT_TRUE(parse_spool_header(kHeld, 100, m));
    EXPECT_EQ(m.id, "1xZVRW-00082M-27");
    EXPECT_EQ(m.held_for, "alice@example.com");
    EXPECT_EQ(m.sender, "alice@example.com");
    EXPECT_EQ(m.received, 1796399006);
    EXPECT_EQ(m.recipients, (std::vector<std::string>{"carol@example.org", "zed@example.com"}))
        << "bob was delivered already";
    EXPECT_EQ(m.subject, "quarterly report");
    EXPECT_EQ(m.size, 26u + 27u + 100u) << "live headers and the body; the deleted header not";
}

TEST(HeldMail, OtherMessagesAndDamagedFilesAreNotHeld) {
    HeldMessage m;
    std::string plain = kHeld;
    plain.replace(plain.find("-local_scan mailsuspend-held alice@example.com\n"),
                  std::string("-local_scan mailsuspend-held alice@example.com\n").size(), "");
    EXPECT_FALSE(parse_spool_header(plain, 0, m)) << "no mark: not held by mailsuspend";
    const std::string text = kHeld;
    for (std::size_t cut : {10ul, 40ul, text.find("NN "), text.find("3\n"), text.find("026F") + 10})
        EXPECT_FALSE(parse_spool_header(text.substr(0, cut), 0, m)) << "cut at " << cut;
    EXPECT_FALSE(parse_spool_header("", 0, m));
    std::string bad_length = kHeld;
    bad_length.replace(bad_length.find("-aclc _note 11"), 14, "-aclc _note 99");
    EXPECT_FALSE(parse_spool_header(bad_length, 0, m));
}
