// The suspension model: expiry, mailbox over domain, modes, service lists.
#include <gtest/gtest.h>

#include "model.hpp"

using namespace mailsuspend;

namespace {

ServiceState suspended(int64_t since, int64_t expires = 0, std::string reason = "") {
    ServiceState s;
    s.suspended = true;
    s.since = since;
    s.expires = expires;
    s.reason = std::move(reason);
    return s;
}

TargetRecord record(std::string key) {
    TargetRecord r;
    r.key = std::move(key);
    return r;
}

uint8_t bit(Service s) { return static_cast<uint8_t>(1u << static_cast<int>(s)); }

}  // namespace

TEST(Model, InForceWithoutExpiry) {
    EXPECT_TRUE(suspended(100).in_force(100));
    EXPECT_TRUE(suspended(100).in_force(1LL << 40));
    EXPECT_FALSE(ServiceState{}.in_force(100));
}

TEST(Model, ExpiryAtTheBoundary) {
    const ServiceState s = suspended(100, 200);
    EXPECT_TRUE(s.in_force(199));
    EXPECT_FALSE(s.in_force(200)) << "an expired suspension is not in force at its expiry second";
    EXPECT_FALSE(s.in_force(201));
}

TEST(Model, InForceMask) {
    TargetRecord r = record("a@example.com");
    r.at(Service::imap) = suspended(1, 50);
    r.at(Service::send) = suspended(1);
    EXPECT_EQ(r.in_force_mask(10), bit(Service::imap) | bit(Service::send));
    EXPECT_EQ(r.in_force_mask(50), bit(Service::send));
}

TEST(Model, EffectiveMailboxOverDomain) {
    TargetRecord mailbox = record("a@example.com");
    TargetRecord domain = record("@example.com");
    mailbox.at(Service::imap) = suspended(1, 0, "mailbox reason");
    domain.at(Service::imap) = suspended(1, 0, "domain reason");
    domain.at(Service::pop3) = suspended(1, 0, "domain only");

    EffectiveService e = effective(&mailbox, &domain, Service::imap, 10);
    EXPECT_EQ(e.scope, Scope::mailbox);
    EXPECT_EQ(e.state.reason, "mailbox reason");

    e = effective(&mailbox, &domain, Service::pop3, 10);
    EXPECT_EQ(e.scope, Scope::domain);
    EXPECT_EQ(e.state.reason, "domain only");

    e = effective(&mailbox, &domain, Service::send, 10);
    EXPECT_EQ(e.scope, Scope::none);
    EXPECT_FALSE(e.state.suspended);
}

TEST(Model, EffectiveFallsBackToDomainWhenMailboxExpired) {
    TargetRecord mailbox = record("a@example.com");
    TargetRecord domain = record("@example.com");
    mailbox.at(Service::imap) = suspended(1, 5, "expired");
    domain.at(Service::imap) = suspended(1, 0, "domain");
    const EffectiveService e = effective(&mailbox, &domain, Service::imap, 10);
    EXPECT_EQ(e.scope, Scope::domain);
    EXPECT_EQ(e.state.reason, "domain");
    EXPECT_EQ(effective(&mailbox, nullptr, Service::imap, 10).scope, Scope::none);
    EXPECT_EQ(effective(nullptr, nullptr, Service::imap, 10).scope, Scope::none);
}

TEST(Model, EffectiveModePrecedence) {
    TargetRecord mailbox = record("a@example.com");
    TargetRecord domain = record("@example.com");
    EXPECT_EQ(effective_mode(&mailbox, &domain, DeliveryMode::queue), DeliveryMode::queue);
    EXPECT_EQ(effective_mode(nullptr, nullptr, DeliveryMode::discard), DeliveryMode::discard);
    domain.mode = DeliveryMode::reject;
    EXPECT_EQ(effective_mode(&mailbox, &domain, DeliveryMode::queue), DeliveryMode::reject);
    mailbox.mode = DeliveryMode::deliver;
    EXPECT_EQ(effective_mode(&mailbox, &domain, DeliveryMode::queue), DeliveryMode::deliver);
    EXPECT_EQ(effective_mode(&mailbox, nullptr, DeliveryMode::queue), DeliveryMode::deliver);
}

TEST(Model, ServiceNamesRoundTrip) {
    for (int i = 0; i < kServiceCount; ++i) {
        const auto s = static_cast<Service>(i);
        EXPECT_EQ(parse_service(service_name(s)), s);
    }
    EXPECT_EQ(service_name(Service::webmail_send), "webmail_send");
    EXPECT_FALSE(parse_service("IMAP").has_value());
    EXPECT_FALSE(parse_service("all").has_value());
}

TEST(Model, ParseServiceList) {
    std::string error;
    EXPECT_EQ(parse_service_list("imap", error), bit(Service::imap));
    EXPECT_EQ(parse_service_list("imap,pop3,sieve", error),
              bit(Service::imap) | bit(Service::pop3) | bit(Service::sieve));
    EXPECT_EQ(parse_service_list("all", error), kAllServicesMask);
    EXPECT_EQ(parse_service_list("imap,all", error), kAllServicesMask);
    EXPECT_EQ(kAllServicesMask, 0x7F);
    EXPECT_EQ(service_list(kAllServicesMask), "imap,pop3,webmail,send,webmail_send,receive,sieve");
    EXPECT_EQ(service_list(bit(Service::receive) | bit(Service::imap)), "imap,receive");
}

TEST(Model, ParseServiceListErrorsNameTheBadPart) {
    std::string error;
    EXPECT_FALSE(parse_service_list("imap,smtp,pop3", error).has_value());
    EXPECT_NE(error.find("'smtp'"), std::string::npos) << error;
    EXPECT_FALSE(parse_service_list("", error).has_value());
    EXPECT_NE(error.find("empty"), std::string::npos) << error;
    EXPECT_FALSE(parse_service_list("imap,", error).has_value());
    EXPECT_NE(error.find("''"), std::string::npos) << error;
    EXPECT_FALSE(parse_service_list("imap, pop3", error).has_value());
    EXPECT_NE(error.find("' pop3'"), std::string::npos) << error;
}

TEST(Model, ModesAndSources) {
    EXPECT_EQ(parse_mode("queue"), DeliveryMode::queue);
    EXPECT_EQ(parse_mode("discard"), DeliveryMode::discard);
    EXPECT_FALSE(parse_mode("default").has_value());
    EXPECT_FALSE(parse_mode("bounce").has_value());
    EXPECT_EQ(mode_name(DeliveryMode::reject), "reject");
    EXPECT_EQ(parse_source("rate"), Source::rate);
    EXPECT_EQ(source_name(Source::spam), "spam");
    EXPECT_EQ(scope_name(Scope::domain), "domain");
    EXPECT_EQ(scope_name(Scope::none), "none");
}

TEST(Model, Empty) {
    TargetRecord r = record("a@example.com");
    EXPECT_TRUE(r.empty());
    r.at(Service::sieve) = suspended(1);
    EXPECT_FALSE(r.empty());
    r.at(Service::sieve) = ServiceState{};
    EXPECT_TRUE(r.empty());
    r.mode = DeliveryMode::discard;
    EXPECT_FALSE(r.empty()) << "a mode is worth keeping";
    r.mode = DeliveryMode::unset;
    r.last_self_unblock = 5;
    EXPECT_FALSE(r.empty()) << "the self-service history is worth keeping";
    r.last_self_unblock = 0;
    r.auto_suspensions.push_back(7);
    EXPECT_FALSE(r.empty()) << "escalation history is worth keeping";
}

TEST(Model, IsDomain) {
    EXPECT_TRUE(record("@example.com").is_domain());
    EXPECT_FALSE(record("a@example.com").is_domain());
    EXPECT_FALSE(record("").is_domain());
}

// ---- the fleet's clock and its last-writer-wins rule (issue 15)

TEST(Fleet, HlcFollowsTheWallClock) {
    EXPECT_EQ(hlc_next(0, 1000), uint64_t{1000} << kHlcCounterBits);
    EXPECT_EQ(hlc_millis(hlc_next(0, 1795432998123)), 1795432998123);
}

TEST(Fleet, HlcIsLaterThanTheStateItReplacesEvenWhenTheClockIsBehind) {
    const uint64_t seen = hlc_next(0, 5000);
    EXPECT_EQ(hlc_next(seen, 4000), seen + 1);  // a clock behind: the counter moves on
    EXPECT_EQ(hlc_next(seen, 5000), seen + 1);  // the same millisecond
    EXPECT_EQ(hlc_next(seen, 6000), uint64_t{6000} << kHlcCounterBits);
    uint64_t h = 0;
    for (int i = 0; i < 1000; ++i) {
        const uint64_t next = hlc_next(h, 7);
        EXPECT_GT(next, h);
        h = next;
    }
}

TEST(Fleet, LastWriterWinsByStampThenNode) {
    TargetRecord a, b;
    a.hlc = 10;
    a.origin = "a";
    b.hlc = 9;
    b.origin = "z";
    EXPECT_TRUE(fleet_newer(a, b));
    EXPECT_FALSE(fleet_newer(b, a));
    b.hlc = 10;  // a tie: the node id decides, the same way on every node
    EXPECT_TRUE(fleet_newer(b, a));
    EXPECT_FALSE(fleet_newer(a, b));
}

TEST(Fleet, ApplyingAStateTwiceChangesNothing) {
    TargetRecord a;
    a.hlc = 10;
    a.origin = "a";
    EXPECT_FALSE(fleet_newer(a, a));
}

TEST(Fleet, AStampedLiftIsKeptNotErased) {
    TargetRecord lifted;
    lifted.key = "u@example.com";
    EXPECT_TRUE(lifted.empty());
    lifted.hlc = 1;
    EXPECT_FALSE(lifted.empty());
}
