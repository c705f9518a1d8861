// Sender tokens, ARF parsing and attribution, evidence samples and the AUP
// notice as built and handed to the MTA.
#include <sodium.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "arf.hpp"
#include "notice.hpp"
#include "policy.hpp"
#include "policy_fixture.hpp"
#include "token.hpp"

using namespace mailsuspend;
using namespace policy_test;

namespace {

TokenKey test_key(unsigned char fill) {
    TokenKey k;
    k.bytes.fill(fill);
    return k;
}

std::string seal(const TokenKey& k, const std::string& account, int64_t t = 1'800'000'000) {
    char buf[kTokenMaxText + 1];
    const std::size_t n = seal_token(k, account, t, buf, sizeof buf);
    EXPECT_GT(n, 0u);
    return std::string(buf, n);
}

TEST(Token, RoundTripsAccountAndIssueTime) {
    const TokenKey k = test_key(7);
    const std::string t = seal(k, "user@example.com");
    EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), std::string::npos)
        << "header-safe base64url: " << t;
    std::string error;
    const auto opened = open_token(k, t, error);
    ASSERT_TRUE(opened) << error;
    EXPECT_EQ(opened->account, "user@example.com");
    EXPECT_EQ(opened->issued, 1'800'000'000);
    EXPECT_EQ(t.find("user"), std::string::npos) << "opaque: the account is not readable in it";
    EXPECT_NE(seal(k, "user@example.com"), t) << "a fresh nonce every time";
}

TEST(Token, EveryTamperedCharacterIsDetected) {
    const TokenKey k = test_key(7);
    const std::string t = seal(k, "user@example.com");
    for (std::size_t i = 0; i + 1 < t.size(); ++i) {  // the last character may carry padding bits only
        std::string bad = t;
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        std::string error;
        EXPECT_FALSE(open_token(k, bad, error)) << "changed character " << i;
    }
    std::string error;
    EXPECT_FALSE(open_token(k, t.substr(0, t.size() - 4), error)) << "truncated";
    EXPECT_FALSE(open_token(k, t + "AAAA", error)) << "extended";
    EXPECT_FALSE(open_token(k, "not a token!", error));
    EXPECT_FALSE(open_token(test_key(8), t, error)) << "another key";
    EXPECT_NE(error.find("does not verify"), std::string::npos) << error;
}

TEST(Token, RefusesBuffersTooSmallAndEmptyAccounts) {
    const TokenKey k = test_key(1);
    char small[20];
    EXPECT_EQ(seal_token(k, "user@example.com", 1, small, sizeof small), 0u);
    char buf[kTokenMaxText + 1];
    EXPECT_EQ(seal_token(k, "", 1, buf, sizeof buf), 0u);
    EXPECT_GT(seal_token(k, std::string(300, 'a') + "@example.com", 1, buf, sizeof buf), 0u);
}

std::string hex(std::string_view bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) out += std::string{digits[c >> 4], digits[c & 15]};
    return out;
}

TEST(Token, IsVersionTwoWithATwentyFourByteRandomNonce) {
    const TokenKey k = test_key(7);
    const std::string t = seal(k, "user@example.com");
    const auto raw = base64url_decode(t);
    ASSERT_TRUE(raw);
    EXPECT_EQ(static_cast<unsigned char>((*raw)[0]), 2u) << "version 2: XChaCha20-Poly1305";
    EXPECT_EQ(raw->size(), 1u + 24 + 8 + std::strlen("user@example.com") + 16);
    std::string error;
    const auto opened = open_token(k, t, error);
    ASSERT_TRUE(opened) << error;
    EXPECT_EQ(opened->message, hex(raw->substr(1, 24))) << "the message id is the nonce";
    // The longest account (320 octets) fills kTokenMaxText exactly; a longer one is refused.
    char buf[kTokenMaxText + 1];
    const std::string longest = std::string(320 - 12, 'a') + "@example.com";
    EXPECT_EQ(seal_token(k, longest, 1, buf, sizeof buf), kTokenMaxText);
    EXPECT_TRUE(open_token(k, buf, error)) << error;
    EXPECT_EQ(seal_token(k, longest + "a", 1, buf, sizeof buf), 0u);
}

// Sealed by the AES-256-GCM code of before 2026-12 (OpenSSL) under the key 32 x 0x07:
// tokens like it are still in mail that complaints quote.
constexpr char kVersionOneToken[] = "AcWOczbKIRW7Jzu8Verlnzdp2cH0GdQ4YALivHcf14Gr5Z5t1YGW6yFjYlHb9o4wzsS20ak";

TEST(Token, VersionOneTokensStillOpen) {
    std::string error;
    const auto opened = open_token(test_key(7), kVersionOneToken, error);
    if (!crypto_aead_aes256gcm_is_available()) {  // a CPU without AES instructions: refused, saying why
        EXPECT_FALSE(opened);
        EXPECT_NE(error.find("version 1"), std::string::npos) << error;
        return;
    }
    ASSERT_TRUE(opened) << error;
    EXPECT_EQ(opened->account, "user@example.com");
    EXPECT_EQ(opened->issued, 1'800'000'000);
    EXPECT_EQ(opened->message, "c58e7336ca2115bb273bbc55");
    std::string bad = kVersionOneToken;
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(open_token(test_key(7), bad, error)) << "tampered";
    EXPECT_FALSE(open_token(test_key(8), kVersionOneToken, error)) << "another key";
}

TEST(Token, TheVersionIsAuthenticatedAndUnknownOnesAreRefused) {
    const TokenKey k = test_key(7);
    auto raw = base64url_decode(seal(k, "user@example.com"));
    ASSERT_TRUE(raw);
    std::string error;
    (*raw)[0] = 3;
    EXPECT_FALSE(open_token(k, base64url_encode(*raw), error));
    EXPECT_NE(error.find("version 3 is unknown"), std::string::npos) << error;
    (*raw)[0] = 1;  // relabelled as version 1: opened with the other cipher, it does not verify
    EXPECT_FALSE(open_token(k, base64url_encode(*raw), error));
    EXPECT_FALSE(open_token(k, "", error));
}

// The Exim daemon forks a process per connection after the key is loaded:
// each must draw its own nonce (libsodium's randombytes_buf is getrandom()).
TEST(Token, ForkedProcessesDrawTheirOwnNonces) {
    const TokenKey k = test_key(7);
    seal(k, "user@example.com");  // libsodium started in the parent, as in the daemon
    std::set<std::string> tokens;
    for (int i = 0; i < 4; ++i) {
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            char buf[kTokenMaxText + 1];
            const std::size_t n = seal_token(k, "user@example.com", 1, buf, sizeof buf);
            ::_exit(::write(fds[1], buf, n) == static_cast<ssize_t>(n) && n > 0 ? 0 : 1);
        }
        ::close(fds[1]);
        char buf[kTokenMaxText + 1];
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        ::close(fds[0]);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_GT(n, 0);
        tokens.insert(std::string(buf, static_cast<std::size_t>(n)).substr(0, 34));  // version + nonce
    }
    EXPECT_EQ(tokens.size(), 4u);
}

class TokenApiTest : public PolicyFixture {};

TEST_F(TokenApiTest, CApiSealsTheNormalisedAccountUnderTheStoreKey) {
    auto* h = open_handle();
    char buf[MAILSUSPEND_TOKEN_MAX];
    const int n = mailsuspend_sender_token(h, "User+tag@Example.COM", buf, sizeof buf);
    ASSERT_GT(n, 0);
    EXPECT_EQ(static_cast<std::size_t>(n), std::strlen(buf));
    std::string error;
    const auto key = load_token_key(dir + "/store", error);
    ASSERT_TRUE(key) << error;
    const auto opened = open_token(*key, buf, error);
    ASSERT_TRUE(opened) << error;
    EXPECT_EQ(opened->account, "user@example.com");
    EXPECT_EQ(mailsuspend_sender_token(h, "not an address", buf, sizeof buf), -1);
    EXPECT_EQ(mailsuspend_sender_token(h, "user@example.com", buf, 10), -1);
    // The CLI decrypts it.
    ASSERT_EQ(run_cli({"token", "--open", std::string(buf, static_cast<std::size_t>(mailsuspend_sender_token(h, "a@example.com", buf, sizeof buf)))}), 0)
        << cli_output;
    EXPECT_NE(cli_output.find("a@example.com"), std::string::npos);
}

TEST_F(TokenApiTest, KeyFileIsPrivateAndInitKeepsIt) {
    struct stat st {};
    ASSERT_EQ(::stat((dir + "/store/token.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0640u);
    EXPECT_EQ(st.st_size, 32);
    const std::string before = read_file(dir + "/store/token.key");
    ASSERT_EQ(run_cli({"init"}), 0);
    EXPECT_EQ(read_file(dir + "/store/token.key"), before) << "init must not replace the key (old tokens stay valid)";
}

// ---- ARF ------------------------------------------------------------------

std::string arf(const std::string& feedback, const std::string& original,
                const std::string& ctype = "multipart/report; report-type=feedback-report;\r\n\tboundary=\"b1\"") {
    return "From: fbl@isp.test\r\nTo: abuse@provider.test\r\nSubject: FW: spam\r\nMIME-Version: 1.0\r\n"
           "Content-Type: " + ctype + "\r\n\r\n"
           "--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
           "--b1\r\nContent-Type: message/feedback-report\r\n\r\n" + feedback +
           "\r\n--b1\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n" + original +
           "\r\n--b1--\r\n";
}

const std::string kFeedback =
    "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
    "Original-Mail-From: <bounce@forged.test>\r\nSource-IP: 192.0.2.1\r\n";

TEST(Arf, ParsesFeedbackFieldsAndTheOriginalsTokens) {
    const std::string original = "Return-Path: <rp@example.com>\r\nX-Mailsuspend-Token: TOKEN1\r\n"
                                 "From: ceo@bank.test\r\nSubject: win\r\n\r\nbody\r\n";
    std::string error;
    const auto r = parse_arf(arf(kFeedback, original), error);
    ASSERT_TRUE(r) << error;
    EXPECT_EQ(r->feedback_type, "abuse");
    EXPECT_EQ(r->user_agent, "SomeGenerator/1.0");
    EXPECT_EQ(r->original_mail_from, "bounce@forged.test");
    EXPECT_EQ(r->source_ip, "192.0.2.1");
    ASSERT_EQ(r->tokens.size(), 1u);
    EXPECT_EQ(r->tokens[0], "TOKEN1");
    EXPECT_EQ(r->return_path, "rp@example.com");
    EXPECT_NE(r->original.find("Subject: win\n"), std::string::npos);
    EXPECT_EQ(r->original.find('\r'), std::string::npos);
}

TEST(Arf, Base64HeadersPartAndUnquotedBoundary) {
    const std::string headers = "X-Mailsuspend-Token: T2\nFrom: x@y.test\n";
    const std::string text =
        "Content-Type: multipart/report; report-type=feedback-report; boundary=zz\n\n"
        "--zz\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n\n"
        "--zz\nContent-Type: text/rfc822-headers\nContent-Transfer-Encoding: base64\n\n" +
        base64_mime(headers) + "--zz--\n";
    std::string error;
    const auto r = parse_arf(text, error);
    ASSERT_TRUE(r) << error;
    ASSERT_EQ(r->tokens.size(), 1u);
    EXPECT_EQ(r->tokens[0], "T2");
}

TEST(Arf, MalformedReportsGiveClearErrors) {
    struct Case {
        std::string text, expect;
    } cases[] = {
        {"", "empty input"},
        {"Subject: hi\n\nbody\n", "no Content-Type header"},
        {"Content-Type: text/plain\n\nhello\n", "expected multipart/report"},
        {"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\n--b--\n",
         "expected feedback-report"},
        {"Content-Type: multipart/report; report-type=feedback-report\n\n--b\n\n--b--\n", "no boundary parameter"},
        {"Content-Type: multipart/report; boundary=b\n\nno parts at all\n", "never occurs"},
        {arf("User-Agent: x\r\n", "Subject: s\r\n\r\nb"), "no Feedback-Type field"},
        {"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b--\n",
         "no message/feedback-report part"},
        {"this is not: a header\nnor this line\n\nbody", "malformed header line"},
    };
    for (const auto& c : cases) {
        std::string error;
        EXPECT_FALSE(parse_arf(c.text, error)) << c.expect;
        EXPECT_NE(error.find(c.expect), std::string::npos) << "got: " << error;
    }
}

class AttributionTest : public PolicyFixture {};

TEST_F(AttributionTest, TokenBeatsForgedEnvelopeAndFromAndTamperingIsBadInput) {
    const Config cfg = config();
    std::string error;
    const auto key = load_token_key(cfg.store_path, error);
    ASSERT_TRUE(key) << error;
    ArfReport r;
    r.feedback_type = "abuse";
    r.original_mail_from = "forged@example.com";
    r.tokens = {seal(*key, "real@example.com")};
    Attribution who;
    ASSERT_TRUE(attribute_arf(cfg, r, true, 1'800'000'000, who).ok());
    EXPECT_EQ(who.address, "real@example.com");
    EXPECT_EQ(who.how, "token");

    std::string bad = r.tokens[0];
    bad[10] = bad[10] == 'x' ? 'y' : 'x';
    r.tokens = {bad};
    const Outcome o = attribute_arf(cfg, r, false, 1'800'000'000, who);
    EXPECT_EQ(o.code, Exit::bad_input) << "a token that does not verify never falls back to the envelope";
    EXPECT_NE(o.message.find("forged or altered"), std::string::npos) << o.message;

    r.tokens.clear();
    EXPECT_EQ(attribute_arf(cfg, r, true, 1'800'000'000, who).code, Exit::bad_input) << "--token-only";
    ASSERT_TRUE(attribute_arf(cfg, r, false, 1'800'000'000, who).ok());
    EXPECT_EQ(who.address, "forged@example.com");
    EXPECT_NE(who.how.find("Original-Mail-From"), std::string::npos);
    r.original_mail_from.clear();
    EXPECT_EQ(attribute_arf(cfg, r, false, 1'800'000'000, who).code, Exit::bad_input);
}

// Issue 12, item 6: a token names one message (its nonce) and has an age limit.
TEST_F(AttributionTest, TokensNameTheirMessageAndExpire) {
    const Config cfg = config();
    ASSERT_EQ(cfg.spam_token_max_age, 30 * 86400) << "the documented default";
    std::string error;
    const auto key = load_token_key(cfg.store_path, error);
    ASSERT_TRUE(key) << error;
    const int64_t now = 1'800'000'000;
    ArfReport r;
    r.feedback_type = "abuse";
    Attribution one, two;
    r.tokens = {seal(*key, "grace@example.com", now - 86400)};
    ASSERT_TRUE(attribute_arf(cfg, r, true, now, one).ok());
    ASSERT_EQ(one.message.rfind("token:", 0), 0u) << one.message;
    r.tokens = {r.tokens[0], r.tokens[0]};  // the same token twice in one message: one message
    ASSERT_TRUE(attribute_arf(cfg, r, true, now, two).ok());
    EXPECT_EQ(two.message, one.message);
    r.tokens = {seal(*key, "grace@example.com", now - 86400)};  // another message of grace's
    ASSERT_TRUE(attribute_arf(cfg, r, true, now, two).ok());
    EXPECT_NE(two.message, one.message);
    // Older than spam.token_max_age, or from the future: refused with the reason.
    r.tokens = {seal(*key, "grace@example.com", now - 31 * 86400)};
    Outcome o = attribute_arf(cfg, r, true, now, two);
    EXPECT_EQ(o.code, Exit::bad_input);
    EXPECT_NE(o.message.find("longer ago than spam.token_max_age (30d)"), std::string::npos) << o.message;
    r.tokens = {seal(*key, "grace@example.com", now + 3600)};
    o = attribute_arf(cfg, r, true, now, two);
    EXPECT_EQ(o.code, Exit::bad_input);
    EXPECT_NE(o.message.find("in the future"), std::string::npos) << o.message;
}

// ---- evidence and notices -------------------------------------------------

class EvidenceTest : public PolicyFixture {};

TEST_F(EvidenceTest, SamplesAreBoundedPerMailboxAndCut) {
    const Config cfg = config();
    std::string error;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(keep_sample(cfg, "a@example.com", "sample " + std::to_string(i), 100 + i, error), 1);
    EXPECT_EQ(keep_sample(cfg, "a@example.com", "one too many", 200, error), 0);
    EXPECT_EQ(keep_sample(cfg, "b@example.com", std::string(kMaxSampleBytes + 10, 'x'), 300, error), 1);
    const auto a = kept_samples(cfg, "a@example.com", 10);
    ASSERT_EQ(a.size(), 3u);
    EXPECT_EQ(a[0].text, "sample 0");
    EXPECT_EQ(a[2].kept, 102);
    const auto b = kept_samples(cfg, "b@example.com", 10);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_LT(b[0].text.size(), kMaxSampleBytes + 100);
    EXPECT_NE(b[0].text.find("cut by mailsuspend"), std::string::npos);
}

TEST_F(EvidenceTest, StaleSamplesGiveWayToTheNextIncident) {
    const Config cfg = config();
    const int64_t age = std::max(cfg.spam_window, cfg.limits.suspend_for);
    std::string error;
    for (int i = 0; i < 3; ++i) ASSERT_EQ(keep_sample(cfg, "a@example.com", "old " + std::to_string(i), 1000 + i, error), 1);
    // Still inside the window: the slots stay taken.
    EXPECT_EQ(keep_sample(cfg, "a@example.com", "too early", 1000 + age, error), 0);
    // Past it, the old samples are dropped and the new one is kept.
    EXPECT_EQ(keep_sample(cfg, "a@example.com", "new", 1003 + age, error), 1);
    const auto a = kept_samples(cfg, "a@example.com", 10);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].text, "new");
}

TEST_F(EvidenceTest, KeyWithSlashCannotEscapeTheEvidenceDirectory) {
    const Config cfg = config();
    const std::string d = evidence_dir(cfg, "../../x/y@example.com");
    EXPECT_EQ(d.find("/../"), std::string::npos) << d;
    EXPECT_EQ(d.rfind(evidence_root(cfg) + "/", 0), 0u);
}

TEST(Notice, HeaderValuesCannotInjectHeaders) {
    EXPECT_TRUE(header_safe_address("abuse@example.com"));
    EXPECT_FALSE(header_safe_address("abuse@example.com\nBcc: victim@x.test"));
    EXPECT_FALSE(header_safe_address("abuse@example.com, other@x.test"));
    EXPECT_FALSE(header_safe_address("Abuse <abuse@example.com>"));
    EXPECT_FALSE(header_safe_address("abuse@exa mple.com"));
    NoticeInput in;
    in.contact = "abuse@example.com";
    in.key = "a\r\nBcc: x@evil.test@example.com";  // cannot come out of normalise(), checked anyway
    in.source = "rate";
    in.why = "line\nbreak";
    in.when = 1'800'000'000;
    const std::string m = build_notice(in);
    EXPECT_EQ(m.find("\nBcc:"), std::string::npos) << m;
}

TEST(Notice, IsMultipartMixedWithEvidenceTxtHoldingEverySampleBase64) {
    NoticeInput in;
    in.contact = "abuse@example.com";
    in.key = "a@example.com";
    in.source = "spam";
    in.why = "3 spam report(s)";
    in.when = 1'800'000'000;
    in.boundary = "BOUNDARY";
    in.samples = {{"", 1, "Subject: one\n\n--BOUNDARY\nfake part\n"}, {"", 2, "Subject: two\n\nbody"}};
    const std::string m = build_notice(in);
    EXPECT_NE(m.find("To: abuse@example.com\n"), std::string::npos);
    EXPECT_NE(m.find("Content-Type: multipart/mixed; boundary=\"BOUNDARY\""), std::string::npos);
    EXPECT_NE(m.find("Content-Disposition: attachment; filename=\"evidence.txt\""), std::string::npos);
    EXPECT_EQ(m.find("\n--BOUNDARY\nfake part"), std::string::npos) << "a sample cannot end a MIME part";
    const auto start = m.find("Content-Transfer-Encoding: base64\n\n");
    ASSERT_NE(start, std::string::npos);
    const auto end = m.find("\n--BOUNDARY--", start);
    const auto evidence = base64_decode(m.substr(start + 35, end - start - 35));
    ASSERT_TRUE(evidence);
    EXPECT_NE(evidence->find("===== Sample 1 of 2"), std::string::npos);
    EXPECT_NE(evidence->find("Subject: one"), std::string::npos);
    EXPECT_NE(evidence->find("Subject: two"), std::string::npos);
}

TEST_F(EvidenceTest, AbuseContactByDomainThenDefault) {
    const Config cfg = config();
    std::string error;
    EXPECT_EQ(abuse_contact(cfg, "a@example.com", error), "abuse@example.com");
    EXPECT_EQ(abuse_contact(cfg, "a@other.test", error), "abuse@provider.test");
    Config none = cfg;
    none.default_abuse_contact.clear();
    EXPECT_EQ(abuse_contact(none, "a@other.test", error), "");
    none.default_abuse_contact = "bad\naddress@x.test";
    EXPECT_EQ(abuse_contact(none, "a@other.test", error), "");
    EXPECT_NE(error.find("not a plain address"), std::string::npos);
}

// The rate path end to end in the core: crossing in "Exim", samples kept by
// the glue's call, the notice left pending (a host process runs no child),
// then handed by the sweep to the (fake) MTA for the abuse contact.
TEST_F(EvidenceTest, RateSuspensionLeavesTheNoticePendingForTheSweep) {
    auto* h = open_handle();
    const char* rcpt[] = {"b@example.com"};
    mailsuspend_result r{};
    for (int i = 0; i < 6; ++i) mailsuspend_count_message(h, "a@example.com", "192.0.2.9", rcpt, 1, &r);
    ASSERT_EQ(r.verdict, MAILSUSPEND_DENY);
    EXPECT_TRUE(mails().empty()) << "the notice waits for the sample of the crossing message";
    const std::string sample = "From: a@example.com\nSubject: cheap pills\n\nbuy now\n";
    EXPECT_EQ(mailsuspend_keep_sample(h, "a@example.com", sample.data(), sample.size()), 1);
    EXPECT_TRUE(mails().empty()) << "the host process sends nothing";
    const std::string pending = dir + "/store/evidence/a@example.com/notice-pending";
    EXPECT_EQ(::access(pending.c_str(), F_OK), 0) << "the notice is pending";
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    EXPECT_NE(cli_output.find("sent 1 pending AUP notice"), std::string::npos) << cli_output;
    const auto sent = mails();
    ASSERT_EQ(sent.size(), 1u);
    const std::string& m = sent[0];
    EXPECT_NE(m.find("To: abuse@example.com\n"), std::string::npos) << m;
    EXPECT_NE(m.find("(sending limits)"), std::string::npos);
    EXPECT_NE(m.find("6 messages within 24h"), std::string::npos);
    const auto start = m.find("Content-Transfer-Encoding: base64\n\n");
    const auto end = m.find("\n--", start);
    const auto evidence = base64_decode(m.substr(start + 35, end - start - 35));
    ASSERT_TRUE(evidence);
    EXPECT_NE(evidence->find("Subject: cheap pills"), std::string::npos) << *evidence;
    EXPECT_EQ(read_file(dir + "/sendmail-args"), "-t -oi\n");
    EXPECT_NE(::access(pending.c_str(), F_OK), 0) << "no longer pending";
    // Sent once: the next sample and sweep do not send it again; samples were cleared.
    EXPECT_EQ(mailsuspend_keep_sample(h, "a@example.com", sample.data(), sample.size()), 1);
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    EXPECT_EQ(mails().size(), 1u);
}

TEST_F(EvidenceTest, AFailedSendLeavesTheNoticePendingForTheSweep) {
    const Config cfg = config();
    std::string error;
    ASSERT_TRUE(mark_notice_pending(cfg, "a@example.com", "rate", "why", 1'800'000'000, error)) << error;
    Config broken = cfg;
    broken.sendmail_command = dir + "/missing-sendmail -t";
    std::vector<std::string> warnings;
    EXPECT_EQ(send_pending_notices(broken, "", warnings), 0);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("not sent"), std::string::npos) << warnings[0];
    ASSERT_EQ(run_cli({"sweep"}), 0) << cli_output;
    EXPECT_EQ(mails().size(), 1u) << cli_output;
    EXPECT_NE(cli_output.find("sent 1 pending AUP notice"), std::string::npos) << cli_output;
}

}  // namespace
