// The (mailbox, client IP) pairs that logged in within the last 24 hours:
// what limits.login_ips_per_day counts from (issue 16).  A fixed table of
// 64-bit atomics in a shared file mapping (<store>/logins), written by
// Dovecot's auth process with compare-and-swap only: no lock, no system call
// per login.  Each entry packs a 36-bit fingerprint of the pair and the
// minute it was last seen; an entry not seen for 24 hours is free again.
//
// A pair is "fresh" when it was not seen in the 24 hours before: that is
// the one login of the pair that counts.  What may go wrong only ever
// under-counts: two pairs whose fingerprints collide within one
// neighbourhood (about 2^-31 per login) count once, and a pair that finds
// its neighbourhood full is not counted at all (Seen::unknown).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

class LoginPairs {
public:
    static constexpr const char* kFileName = "logins";
    static constexpr int64_t kWindow = 24 * 3600;  // a pair seen within it is not fresh
    static constexpr uint64_t kEntryBytes = 8;     // one atomic per entry, two entries per pair of capacity

    enum class Seen { fresh, again, unknown };

    // Maps <dir>/logins read-write, creating it (room for capacity pairs)
    // when create is set.  nullptr and error_r on failure.  noexcept.
    static std::unique_ptr<LoginPairs> open(const std::string& dir, bool create, uint64_t capacity,
                                            std::string& error_r);
    ~LoginPairs();
    LoginPairs(const LoginPairs&) = delete;
    LoginPairs& operator=(const LoginPairs&) = delete;

    // Records a login of mailbox from ip at now: fresh when the pair was not
    // seen within kWindow before (it is recorded now either way), again
    // when it was, unknown when the table is full or unusable (nothing
    // recorded).
    Seen note(std::string_view mailbox, std::string_view ip, int64_t now) noexcept;
    // Takes back the record note() just made of a fresh pair (a login that
    // was refused for crossing the limit is not remembered as seen).
    void forget(std::string_view mailbox, std::string_view ip, int64_t now) noexcept;
    // True when the pair was seen within kWindow before now (no change).
    bool seen(std::string_view mailbox, std::string_view ip, int64_t now) const noexcept;
    bool usable() const noexcept;

    // What `mailsuspend check` says of <dir>/logins: empty when it is a
    // whole file of this layout (or absent), else the problems.
    static std::vector<std::string> verify(const std::string& dir);

    struct Impl;
private:
    explicit LoginPairs(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace mailsuspend
