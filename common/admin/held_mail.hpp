// Mail held in Exim's queue (suspend --service send --hold; limits.action or
// spam.action "hold"): what `mailsuspend held` lists and `release` delivers
// or deletes.  The Exim module marks a message it holds in $local_scan_data
// (kHeldMark + the sending identity), which Exim keeps in the message's
// spool header file; the mailsuspend_hold router defers it while its
// sender's send stays suspended.  The CLI reads the spool header files
// (Exim's documented format, as exipick does) and has Exim itself deliver
// (-M) or remove (-Mrm) them.  CLI only: it runs programs and waits.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"

namespace mailsuspend {

struct HeldMessage {
    std::string id;
    std::string held_for;                 // the identity the Exim module held it for
    std::string sender;                   // envelope sender ("" for a bounce)
    int64_t received = 0;                 // epoch seconds
    uint64_t size = 0;                    // headers and body in octets, as exim -bp counts
    std::vector<std::string> recipients;  // those not delivered yet
    std::string subject;                  // unfolded, printable
};

// The text of a spool header file ("<id>-H") as m; false when it is not one
// or the message is not held by mailsuspend.  body_size: the -D file's size.
bool parse_spool_header(std::string_view text, uint64_t body_size, HeldMessage& m);

// The held messages of key (a mailbox, or "@domain": every mailbox of it),
// oldest first, from the queue of cfg.exim_command.  false with error_r when
// the spool cannot be found or read.
bool find_held_mail(const Config& cfg, const std::string& key, std::vector<HeldMessage>& out,
                    std::string& error_r);

// Runs cfg.exim_command with option ("-M": deliver now, "-Mrm": remove)
// on ids; nothing to do for none.
bool exim_on_messages(const Config& cfg, const char* option, const std::vector<std::string>& ids,
                      std::string& error_r);

// find_held_mail + exim -M: key's held mail delivered at once (its hold was lifted).
bool deliver_held_mail(const Config& cfg, const std::string& key, std::string& error_r);

}  // namespace mailsuspend
