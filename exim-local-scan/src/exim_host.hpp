// The few Exim services the module uses, behind plain C++ signatures so the
// rest of the module never includes Exim's headers.  Everything here is
// exported by Debian's exim4 binary (checked by tests/exim/test_symbols.py):
// log_write, expand_string, string_copy_function and the documented globals.
// Nothing here throws.
#pragma once

#include <cstddef>
#include <string>

namespace mailsuspend_exim {

// One line in Exim's main log: "mailsuspend: <text>".
void log_main(const char* format, ...) noexcept __attribute__((format(printf, 1, 2)));

// $name expanded by Exim ("" when unset or the expansion fails).
const char* expand_variable(const char* expression) noexcept;

// $authenticated_id when the client authenticated with SMTP AUTH, else "".
// (Exim also fills $authenticated_id with the caller's login for local
// submissions; that is not an identity the "send" suspension knows.)
const char* smtp_auth_id() noexcept;

// True when this Exim binary can run ${dlfunc} (exim4-daemon-heavy), i.e.
// when the router and ACL snippets can be in use.  Checked once per process.
bool dlfunc_available() noexcept;
// Called from a ${dlfunc} entry point: proves dlfunc_available().
void note_dlfunc_available() noexcept;

// In the daemon: has Exim's own local_scan() load local_scan_path now.
// Debian's Exim loads it at a process's first message, and every receiving
// process the daemon forks is such a process: each opened the module again,
// and glibc, comparing the name with every loaded library's, read a page of
// each (about 30 page faults per message).  Loaded once here, the forks
// inherit the loaded function.  Exim then calls this module's local_scan
// with no message, data_fd -1, which must answer at once.  Nothing is
// loaded when local_scan_path names another module.
void load_local_scan_in_daemon() noexcept;

// Copies text into Exim's per-message memory (what Exim expects to own).
char* exim_copy(const char* text) noexcept;

// The message being received (local_scan) or delivered (routers).
const char* current_message_id() noexcept;
const char* current_sender() noexcept;   // "" for bounces
const char* current_client_ip() noexcept;         // nullptr for local submissions
int current_recipient_count() noexcept;
const char* current_recipient(int index) noexcept;
bool remove_recipient(const char* address) noexcept;

// local_scan only: the message's header lines.
// Marks every header line called name (case-insensitive) as deleted, as a
// system filter's "headers remove" would; returns how many there were.
int drop_header(const char* name) noexcept;
// Appends "name: value" to the header (Exim writes it to the spool file).
void add_header(const char* name, const char* value) noexcept;
// The message as far as local_scan can see it: its live header lines, a
// blank line and the first body_max octets of the body, read with pread()
// from data_fd so Exim's file position stays where it is.  May throw
// std::bad_alloc (local_scan catches).
std::string message_sample(int data_fd, std::size_t body_max);

}  // namespace mailsuspend_exim
