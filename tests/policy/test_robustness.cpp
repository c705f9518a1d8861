// Bad input never crashes and the hot path stays cheap:
//  - mutated ARF reports either parse or give an error, never crash;
//  - the C API tolerates NULLs;
//  - mailsuspend_count_message allocates nothing on the allowed path.
#include <atomic>
#include <cstdlib>
#include <new>
#include <random>

#include "arf.hpp"
#include "notice.hpp"
#include "policy_fixture.hpp"
#include "token.hpp"

using namespace mailsuspend;
using namespace policy_test;

// Counts heap allocations while armed (this test binary only).  GCC cannot
// see that the replaced new and delete pair malloc with free.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<bool> g_counting{false};
static std::atomic<long> g_allocations{0};

static void* counted_malloc(std::size_t n) noexcept {
    if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
void* operator new(std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

const std::string kReport =
    "Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n"
    "--b\nContent-Type: text/plain\n\nreport\n"
    "--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nOriginal-Mail-From: <a@example.com>\n\n"
    "--b\nContent-Type: message/rfc822\n\nX-Mailsuspend-Token: abc\nSubject: s\n\nbody\n--b--\n";

TEST(Robustness, MutatedArfReportsNeverCrash) {
    std::mt19937 rng(12345);
    const char alphabet[] = "\r\n\t :;=\"-b<>@\\\x00\xff";
    int parsed = 0, refused = 0;
    for (int round = 0; round < 20000; ++round) {
        std::string text = kReport;
        const int edits = 1 + static_cast<int>(rng() % 8);
        for (int e = 0; e < edits; ++e) {
            const std::size_t at = rng() % (text.size() + 1);
            switch (rng() % 3) {
                case 0: text.insert(at, 1, alphabet[rng() % (sizeof alphabet - 1)]); break;
                case 1: if (at < text.size()) text.erase(at, 1 + rng() % 20); break;
                default: text = text.substr(0, at); break;
            }
        }
        std::string error;
        const auto r = parse_arf(text, error);
        if (r) {
            ++parsed;
            EXPECT_FALSE(r->feedback_type.empty());
        } else {
            ++refused;
            EXPECT_FALSE(error.empty());
            EXPECT_EQ(error.find('\n'), std::string::npos) << "one-line errors";
        }
    }
    EXPECT_GT(parsed, 0);
    EXPECT_GT(refused, 0);
}

TEST(Robustness, TokensOfRandomTextNeverOpen) {
    TokenKey k;
    k.bytes.fill(3);
    std::mt19937 rng(99);
    for (int i = 0; i < 5000; ++i) {
        std::string text(rng() % 200, '\0');
        for (char& c : text) c = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[rng() % 64];
        std::string error;
        EXPECT_FALSE(open_token(k, text, error));
    }
}

class ApiRobustness : public PolicyFixture {};

TEST_F(ApiRobustness, NullArgumentsAreHarmless) {
    auto* h = open_handle();
    mailsuspend_result r{};
    mailsuspend_count_message(nullptr, "a@example.com", nullptr, nullptr, 0, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    mailsuspend_count_message(h, nullptr, nullptr, nullptr, 3, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    const char* rcpts[] = {nullptr, "b@example.com", ""};
    mailsuspend_count_message(h, "a@example.com", "", rcpts, 3, &r);
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW);
    mailsuspend_count_message(h, "a@example.com", nullptr, nullptr, 0, nullptr);
    EXPECT_EQ(mailsuspend_keep_sample(nullptr, "a@example.com", "x", 1), 0);
    EXPECT_EQ(mailsuspend_keep_sample(h, nullptr, "x", 1), 0);
    EXPECT_EQ(mailsuspend_keep_sample(h, "a@example.com", nullptr, 5), 0);
    char buf[MAILSUSPEND_TOKEN_MAX];
    EXPECT_EQ(mailsuspend_sender_token(nullptr, "a@example.com", buf, sizeof buf), -1);
    EXPECT_EQ(mailsuspend_sender_token(h, nullptr, buf, sizeof buf), -1);
    EXPECT_EQ(mailsuspend_sender_token(h, "a@example.com", nullptr, 10), -1);
}

TEST_F(ApiRobustness, TheAllowedPathAllocatesNothing) {
    auto* h = open_handle();
    const char* rcpts[] = {"b@example.com", "x@other.test", "y@Other.Test"};
    mailsuspend_result r{};
    mailsuspend_count_message(h, "a@example.com", "192.0.2.1", rcpts, 3, &r);  // opens the counters once
    ASSERT_EQ(r.verdict, MAILSUSPEND_ALLOW) << r.text;
    g_allocations = 0;
    g_counting = true;
    ::operator delete(::operator new(16));  // the counter itself works (a call, never elided)
    g_counting = false;
    ASSERT_EQ(g_allocations.load(), 1);
    g_allocations = 0;
    g_counting = true;
    mailsuspend_count_message(h, "a@example.com", "192.0.2.1", rcpts, 3, &r);
    mailsuspend_count_message(h, "c@example.com", "192.0.2.1", rcpts, 1, &r);
    g_counting = false;
    EXPECT_EQ(r.verdict, MAILSUSPEND_ALLOW) << r.text;
    EXPECT_EQ(g_allocations.load(), 0);
}

}  // namespace
