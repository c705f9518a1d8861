// Event counters for `mailsuspend metrics`: one small file per host class
// under store.path, mapped shared by the hosts, which count with one relaxed
// atomic add per event (no lock, no system call), so counts survive a
// restart of Dovecot or Exim.
//
//   <store.path>/metrics-dovecot  0660 root:store.read_group   (auth, imap, pop3)
//   <store.path>/metrics-exim     0660 root:store.write_group  (Exim, the CLI's writers)
//
// One file per class because a file the read group may write must never be
// able to hurt Exim: a host maps only its own class's file, checks its size
// and header first, and touches it only under the SIGBUS guard (a file
// truncated under the mapping makes the add fail, not the process die).
// The exporter (the CLI) never maps: it reads a copy with pread().
//
// Layout (version 1, little-endian, fixed):
//   [Header: 64 bytes][uint64 counter x kMetricSlots]
// Slot numbers are part of the layout: a new counter takes a free slot,
// an existing one never moves (a new meaning needs a new version).
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mailsuspend::metrics {

enum class HostClass : uint8_t { dovecot = 0, exim = 1 };
constexpr int kHostClasses = 2;

constexpr uint64_t kMagic = 0x3143544D534D4DULL;  // "MMSMTC1"
constexpr uint32_t kVersion = 1;
constexpr int kMetricSlots = 128;

struct Header {
    uint64_t magic;
    uint32_t version;
    uint32_t slot_count;
    uint64_t file_size;
    uint8_t host_class;
    uint8_t pad[39];
};
static_assert(sizeof(Header) == 64);
constexpr uint64_t kFileSize = sizeof(Header) + kMetricSlots * sizeof(uint64_t);

// First slot of each counter family; the label's index is added to it.
enum Slot : int {
    kLoginDenied = 0,      // + Service (7)                      [dovecot]
    kSessionEnded = 8,     // + Service (7)                      [dovecot]
    kSendRefused = 16,     // + SendRefusal (5)                  [exim]
    kReceive = 24,         // + receive mode (5)                 [exim]
    kAutoSuspension = 32,  // + AutoCause 0-7                  [exim; login_ips_per_day: dovecot]
    kSpamReports = 40,     //                                    [exim]
    kFailPolicy = 44,      // + 0 open, 1 closed                 [both]
    kLastSweep = 48,       // gauge: epoch seconds of the last `mailsuspend sweep`  [exim]
    kAutoSuspensionMore = 52,  // + AutoCause 8-15 (the first family's slots are full)
};

enum class SendRefusal : uint8_t { suspended = 0, recipients_per_message, rate_limit, fail_policy, ip_throttled };
constexpr const char* kSendRefusalNames[] = {"suspended", "recipients_per_message", "rate_limit", "fail_policy",
                                            "ip_throttled"};
// The order of enum mailsuspend_mode.
constexpr const char* kReceiveModeNames[] = {"deliver", "discard", "reject", "queue", "expired"};
// New causes go at the end: a cause's slot is its index, kept across upgrades.
enum class AutoCause : uint8_t { messages_per_day = 0, offdomain_recipients_per_day, offdomain_recipients_per_hour_per_ip, spam,
                                 domain_messages_per_hour, domain_offdomain_recipients_per_day,
                                 unknown_recipients_per_hour, failed_share_percent, login_ips_per_day };
constexpr const char* kAutoCauseNames[] = {"messages_per_day", "offdomain_recipients_per_day",
                                           "offdomain_recipients_per_hour_per_ip", "spam",
                                           "domain_messages_per_hour", "domain_offdomain_recipients_per_day",
                                           "unknown_recipients_per_hour", "failed_share_percent",
                                           "login_ips_per_day"};
static_assert(std::size(kAutoCauseNames) <= 16 && kAutoSuspensionMore + 8 <= kMetricSlots,
              "the causes' slots end before the next family");
// A cause's slot: the first eight in kAutoSuspension's family, the next in kAutoSuspensionMore's.
constexpr int auto_suspension_slot(AutoCause c) {
    const int i = static_cast<int>(c);
    return i < 8 ? kAutoSuspension + i : kAutoSuspensionMore + i - 8;
}
// The cause of a rate limit's config name, nullopt for another name.
std::optional<AutoCause> cause_of_limit(std::string_view limit);

const char* class_name(HostClass c);
std::string path_of(const std::string& store_path, HostClass c);

// Creates the file (zeroed) unless a valid one is there, owned by group gid
// (-1: leave it), mode 0660.  An invalid one (bad magic, short) is replaced.
// false and what failed in error_r.
bool create(const std::string& store_path, HostClass c, gid_t gid, std::string& error_r);

// A host's mapping of its class's file.
class Writer {
public:
    // nullptr and error_r when the file is missing, not a regular file, of
    // another size or version, or cannot be mapped read-write.
    static std::unique_ptr<Writer> open(const std::string& path, std::string& error_r) noexcept;
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // One relaxed atomic add (no system call).  False when the file was
    // truncated or overwritten under the mapping (nothing counted).
    bool add(int slot, uint64_t n = 1) noexcept;
    bool set(int slot, uint64_t value) noexcept;

private:
    Writer(void* base, std::size_t size) : base_(base), size_(size) {}
    std::atomic<uint64_t>* slot_at(int slot) const noexcept;
    bool intact() const noexcept;
    void* base_;
    std::size_t size_;
};

using Snapshot = std::array<uint64_t, kMetricSlots>;

// The exporter's read: a copy of the counters through pread() (never a
// mapping: nobody can make the reader fault).  nullopt and error_r when the
// file is missing or not a valid metrics file.
std::optional<Snapshot> read(const std::string& path, std::string& error_r);

}  // namespace mailsuspend::metrics
