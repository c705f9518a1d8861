// Mail text in and out of the policy layer:
//  - evidence: sample messages kept per mailbox under <store.path>/evidence/<key>/
//    (bounded), and the pending-notice marker an automatic suspension leaves;
//  - AUP notices: a MIME multipart/mixed message to the abuse contact of the
//    mailbox's domain with the samples in an attachment named evidence.txt,
//    handed to spam.sendmail_command (executed without a shell);
// Every value that reaches a header is validated or sanitised: no CR/LF,
// only printable ASCII; samples travel base64-encoded in the body.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

struct Config;

// Largest sample kept (longer ones are cut, with a note).
constexpr std::size_t kMaxSampleBytes = 128 * 1024;

// ---- evidence -------------------------------------------------------------

// <store.path>/evidence: created by `mailsuspend init` (group write_group, 02770).
std::string evidence_root(const Config& cfg);
// The directory of one mailbox key (the key with unsafe octets %-encoded).
std::string evidence_dir(const Config& cfg, std::string_view key);
// Creates the evidence root (init).  false with the error in error_r.
bool create_evidence_root(const Config& cfg, std::string& error_r);

// Creates (02770, whatever the umask) the directory of key, named in dir;
// false with the error in error_r.
bool ensure_evidence_dir(const Config& cfg, std::string_view key, std::string& dir, std::string& error_r);

// Keeps text as a sample for key unless spam.evidence_samples are already
// kept (then it is dropped: the first ones are the messages that crossed).
// Returns 1 kept, 0 dropped (full or evidence_samples = 0), -1 and error_r.
int keep_sample(const Config& cfg, std::string_view key, std::string_view text, int64_t now,
                std::string& error_r);

struct Sample {
    std::string file;  // full path
    int64_t kept = 0;  // epoch
    std::string text;
};
// Kept samples of key, oldest first, at most max.
std::vector<Sample> kept_samples(const Config& cfg, std::string_view key, std::size_t max);

// Marks that key needs an AUP notice (after an automatic suspension).
// why: one line, e.g. "6 messages within 24h (limits.messages_per_day = 5)".
// false with the error in error_r.
bool mark_notice_pending(const Config& cfg, std::string_view key, std::string_view source, std::string_view why,
                         int64_t now, std::string& error_r);

// Sends the pending notice of key (or of every key when key is empty):
// claims the marker, sends with the kept samples, deletes the samples sent.
// A failed send puts the marker back (the next sweep retries).  Returns the
// number of notices sent; problems go to warnings.
int send_pending_notices(const Config& cfg, std::string_view key, std::vector<std::string>& warnings);

// ---- notices --------------------------------------------------------------

// The abuse contact for a mailbox key: spam.abuse_contacts[domain], else
// spam.default_abuse_contact; "" when none (or invalid: then error_r says why).
std::string abuse_contact(const Config& cfg, std::string_view key, std::string& error_r);

// Printable ASCII only (others become '?'), at most max octets: a header
// value made from our own data.
std::string header_text(std::string_view s, std::size_t max);
// "Fri, 04 Dec 2026 13:50:00 +0000" (UTC).
std::string rfc5322_date(int64_t epoch);

// An address fit for a header: atext/dots, one '@', no CR/LF/space/<>/,;
bool header_safe_address(std::string_view address);

struct NoticeInput {
    std::string contact;   // To:
    std::string key;       // the mailbox
    std::string source;    // "rate" or "spam"
    std::string why;       // one line
    int64_t when = 0;
    std::vector<Sample> samples;
    std::string boundary;  // empty: a random one
};
// The complete message (LF line ends; sendmail -t -oi takes them).
std::string build_notice(const NoticeInput& in);

// Executes command (split on spaces, no shell; "{address}" becomes
// contact) with message on stdin.  false with what went wrong in error_r.
bool run_sendmail(const std::string& command, const std::string& contact, const std::string& message,
                  std::string& error_r);

}  // namespace mailsuspend
