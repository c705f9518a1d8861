// Rate counters: a fixed table of atomic sliding-window counters in a shared
// file mapping (<store>/counters), updated by many Exim processes at once
// with compare-and-swap only: no lock.  Each entry holds 24 buckets; a bucket
// packs (bucket number << 32 | count) into one 64-bit atomic, so a stale
// bucket is reset and counted in the same CAS and counts stay exact.  An
// entry whose key has been idle for a whole window is claimed by the next new
// key on its probe path, so a table sized for the keys of one day never fills
// up with client IPs seen long ago.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

enum class CounterKind : uint8_t {
    messages = 0,          // messages sent by a mailbox (day window, hourly buckets)
    offdomain_rcpts = 1,   // off-domain recipients of a mailbox (day window)
    ip_offdomain_rcpts = 2,// off-domain recipients from a client IP (hour window, 5-min buckets)
    spam_reports = 3,      // spam reports against a mailbox (day window)
    domain_messages = 4,   // messages sent by a domain's mailboxes (hour window, 5-min buckets)
    domain_offdomain_rcpts = 5,  // off-domain recipients of a domain's mailboxes (day window)
    unknown_rcpts = 6,     // recipients refused as non-existent for a mailbox (hour window, 5-min buckets)
    // limits.failed_share_*, under a mailbox's key and under its domain's (hour window, 5-min buckets):
    outbound_outcomes = 7, // remote recipients with an outcome at their message's first delivery attempt
    failed_outcomes = 8,   // of those, bounced or deferred (a deferral once per recipient domain and hour)
    deferral_marks = 9,    // key "<sender>/<recipient domain>": deferrals seen this hour (the first one counts)
    login_ips = 10,        // client IPs new to a mailbox's logins (day window; in <store>/login-counters)
};
constexpr int kCounterKinds = 11;
constexpr int kBuckets = 24;

// fleet.counters = "fleet" (issue 15): the other nodes' counts of a kind,
// under the same key, set by the fleet agent (set_buckets) and added to this
// node's own by the rate decisions.  Same buckets and window as the kind.
constexpr uint8_t kFleetShareBit = 0x20;
constexpr CounterKind fleet_share(CounterKind kind) {
    return static_cast<CounterKind>(static_cast<uint8_t>(kind) | kFleetShareBit);
}

// Bucket width in seconds for a kind.  Windows: 24 hourly buckets (a day)
// for the day kinds; 12 of the 24 five-minute buckets (an hour) for the
// hour kinds (an IP's, a domain's messages, a mailbox's unknown recipients,
// the delivery outcomes of limits.failed_share_*).
int64_t bucket_width(CounterKind kind);
// The sliding window's length in seconds: 24 h for day kinds, 1 h for hour kinds.
int64_t window_length(CounterKind kind);

// One bucket still inside the window: count events, which leave the window
// (so the total falls back by count) at leaves.
struct CountedBucket {
    int64_t leaves = 0;
    uint32_t count = 0;
};

// One bucket by its number (time / bucket_width): how buckets travel between nodes.
struct NumberedBucket {
    uint64_t number = 0;
    uint32_t count = 0;
};

class Counters {
public:
    // Maps <dir>/<name> read-write, creating it (sized for capacity keys)
    // when create is set.  nullptr and error_r on failure.  noexcept.
    // name: "counters" (Exim's), or kLoginCountersName (Dovecot's auth
    // process counts limits.login_ips_per_day there: a file of its own
    // group, store.login_group).
    static constexpr const char* kLoginCountersName = "login-counters";
    static std::unique_ptr<Counters> open(const std::string& dir, bool create,
                                          uint64_t capacity, std::string& error_r, const char* name = "counters");
    ~Counters();
    Counters(const Counters&) = delete;
    Counters& operator=(const Counters&) = delete;

    // Adds n at time now; returns the window's total including n, or -1 when
    // the table is full or unusable.
    int64_t add(std::string_view key, CounterKind kind, uint32_t n, int64_t now) noexcept;
    // The same, but only if the total stays within max: returns the total
    // with n, and a total above max means nothing was added.
    int64_t add_within(std::string_view key, CounterKind kind, uint32_t n, int64_t max, int64_t now) noexcept;
    // Takes back n added at time when (a refused message is not counted).
    void remove(std::string_view key, CounterKind kind, uint32_t n, int64_t when) noexcept;
    // Forgets every count of key (a manually lifted rate suspension starts afresh).
    void reset(std::string_view key, CounterKind kind) noexcept;
    // The window's total at now (0 for an unknown key), -1 when unusable.
    int64_t total(std::string_view key, CounterKind kind, int64_t now) const noexcept;
    // The buckets that make up total() at now, oldest first (empty buckets
    // left out): what a usage view needs to say when the count falls back.
    std::vector<CountedBucket> window(std::string_view key, CounterKind kind, int64_t now) const;
    // The same buckets by number (empty ones left out, in no order).
    std::vector<NumberedBucket> buckets(std::string_view key, CounterKind kind, int64_t now) const;
    // Makes key's window exactly buckets (those outside the window at now
    // are dropped): for the fleet agent's fleet_share() kinds, whose only
    // writer it is.  False when the table is full or unusable.
    bool set_buckets(std::string_view key, CounterKind kind, const std::vector<NumberedBucket>& buckets,
                     int64_t now) noexcept;
    // Rate suspensions waiting in <store>/outbox, as their writers counted
    // them in (spare header bytes of this file): a writer notes +1 before it
    // links a suspension entry and -1 once it removed one, and the drain
    // raises it to what it left behind, so it may run high but not low.  A
    // send check that reads 0 needs no look into the outbox.  UINT64_MAX
    // when the file is unusable (look, then).
    void note_outbox_suspensions(int delta) noexcept;
    void raise_outbox_suspensions(uint64_t at_least) noexcept;
    uint64_t outbox_suspensions() const noexcept;
    // False once the mapping faulted (the file was truncated in place) or its
    // header no longer reads as a counters file: every call then counts
    // nothing (-1) and the owner should open the file afresh.
    bool usable() const noexcept;
    // True when <dir>/counters is now another file than the one mapped (a
    // good file renamed into place), was truncated or grown in place, or is
    // gone.  One stat(); a long-lived caller asks now and then and reopens.
    bool replaced() const noexcept;

    // What `mailsuspend check` says of <dir>/counters: empty when it is a
    // whole counters file of this layout (or absent: it is created by init),
    // else the problems.  Reads the file; takes no lock.
    static std::vector<std::string> verify(const std::string& dir, const char* name = "counters");

    struct Impl;
private:
    explicit Counters(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace mailsuspend
