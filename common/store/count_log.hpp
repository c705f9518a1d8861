// The count log (fleet.counters = "fleet", issue 15): which senders and
// client IPs Exim counted a message for, so that the fleet agent knows whose
// window counts to share through Redis.  Counters (counters.hpp) keep only a
// hash of each key; this log keeps the keys themselves, briefly.
//
// A ring of fixed slots in <store>/count-log, appended to by many Exim
// processes at once without a lock: one fetch_add claims a slot, the text is
// stored in atomic words and the slot is published with its position (a
// seqlock: a reader that sees the position before and after its copy has a
// whole record).  Lossy by design: when the agent falls a whole ring behind,
// the oldest records are overwritten and counted as lost; their keys are
// shared again at their next message, and the counts themselves are never
// touched (they live in <store>/counters).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

// One counted message: the sender's key and the client IP ("" when none).
struct CountedMessage {
    std::string sender;
    std::string client_ip;
};

class CountLog {
public:
    static constexpr const char* kName = "count-log";
    // Maps <dir>/count-log read-write, creating it (0660) when create is set.
    // nullptr and error_r on failure.  noexcept.
    static std::unique_ptr<CountLog> open(const std::string& dir, bool create, std::string& error_r) noexcept;
    ~CountLog();
    CountLog(const CountLog&) = delete;
    CountLog& operator=(const CountLog&) = delete;

    // Records one message (a sender past kMaxSender octets, or an IP past
    // kMaxIp, is not recorded: no address is that long).  Never blocks.
    static constexpr std::size_t kMaxSender = 256, kMaxIp = 46;
    void append(std::string_view sender, std::string_view client_ip) noexcept;

    // The next position to be written, and how many slots the ring has.
    uint64_t head() const noexcept;
    uint64_t slots() const noexcept;

    // Reads the records at positions [from, head()) into out.  Stops at a
    // slot whose writer has not finished, unless skip_unfinished (the agent
    // saw it unfinished a while ago: its writer died).  lost_r: records
    // overwritten before they were read, or skipped.  Returns the position
    // to read from next time.
    uint64_t read(uint64_t from, bool skip_unfinished, std::vector<CountedMessage>& out,
                  uint64_t& lost_r) const;

    // False once the mapping faulted or its header changed (replaced in place).
    bool usable() const noexcept;

    struct Impl;
private:
    explicit CountLog(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace mailsuspend
