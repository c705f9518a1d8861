// The config parser (config.hpp): load_config() on a file holding the fuzz
// input, then mailsuspend_open() on the same file -- the path every Exim and
// Dovecot process takes -- and a check of each kind through the C API.  And
// the file's snapshot (config_snapshot.hpp): what a fresh mail process reads
// must be what the file parses to, or nothing.
//
// Checked beyond "no crash": a refused file has an error that names it; an
// accepted one keeps the invariants the rest of the core relies on (absolute
// store path, separator of at most one character, messages without control
// characters); every reply text a host would send is NUL-terminated and one
// printable line.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "config.hpp"
#include "config_snapshot.hpp"
#include "fuzz_util.hpp"
#include "mailsuspend/mailsuspend.h"

using namespace mailsuspend;

namespace {

void check_reply(const mailsuspend_result& r, const char* call) {
    const void* nul = std::memchr(r.text, '\0', sizeof r.text);
    if (!nul) fuzz::violated(call, "reply text not NUL-terminated");
    if (!fuzz::printable_line(r.text)) fuzz::violated(call, r.text);
    if (!r.scope || !r.service) fuzz::violated(call, "NULL scope or service");
}

void through_c_api(const std::string& path) {
    const char* error = nullptr;
    struct mailsuspend_handle* ms = mailsuspend_open(path.c_str(), nullptr, nullptr, &error);
    if (!ms) fuzz::violated("mailsuspend_open returned NULL");
    if (error && !fuzz::printable_line(error)) fuzz::violated("open error is not one line", error);
    mailsuspend_result r;
    mailsuspend_check_login(ms, "User+tag@Example.COM", "imap", "127.0.0.2", &r);
    check_reply(r, "check_login");
    mailsuspend_check_login(ms, "bare", "pop3", "::1", &r);
    check_reply(r, "check_login bare");
    mailsuspend_check_send(ms, "user@example.com", "192.0.2.1", &r);
    check_reply(r, "check_send");
    mailsuspend_check_receive(ms, "user@example.com", 400000, &r);
    check_reply(r, "check_receive");
    char buf[MAILSUSPEND_TEXT_MAX];
    for (const char* key : {"suspended", "unavailable", "send_suspended", "rate_suspended", "receive_rejected",
                            "recipients_per_message"}) {
        if (mailsuspend_message(ms, key, buf, sizeof buf) == 0 && !fuzz::printable_line(buf))
            fuzz::violated("mailsuspend_message", buf);
    }
    mailsuspend_is_webmail_host(ms, "2001:db8::1");
    mailsuspend_close(&ms);
}

// The CLI keeps the snapshot; a fresh mail process reads it.  An accepted
// file's snapshot gives the parse's Config exactly (keep parses the text it
// read with config_read_string, load_config the file: they must agree); a
// refused file has none.  Only an @include or a NUL octet keep an accepted
// file from having one.
void through_snapshot(const std::string& path, const std::optional<Config>& parsed, std::string_view text) {
    static const std::string dir = fuzz::scratch_dir("config") + "/snapshots";
    std::string why;
    const SnapshotState state = keep_config_snapshot(path, dir, parsed ? &*parsed : nullptr, why);
    const auto snap = read_config_snapshot(path, dir);
    if (!parsed) {
        if (state != SnapshotState::not_kept || snap) fuzz::violated("a file that does not parse has a snapshot");
        return;
    }
    if (state == SnapshotState::not_kept) {
        if (text.find("@include") == std::string_view::npos && text.find('\0') == std::string_view::npos)
            fuzz::violated("an accepted file has no snapshot", why);
        if (snap) fuzz::violated("a snapshot was read that was not kept");
        return;
    }
    if (!snap) fuzz::violated("the snapshot just kept is not read");
    if (!(*snap == *parsed)) fuzz::violated("the snapshot differs from the parse");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz::scratch_dir("config") + "/mailsuspend.conf";
    fuzz::write_file(path, data, size);
    std::string error;
    const auto cfg = load_config(path, error);
    if (!cfg) {
        if (error.empty()) fuzz::violated("refused without a reason");
    } else {
        if (cfg->store_path.empty() || cfg->store_path.front() != '/')
            fuzz::violated("accepted a relative store.path", cfg->store_path);
        if (cfg->address.subaddress_separator.size() > 1)
            fuzz::violated("accepted a long subaddress_separator", cfg->address.subaddress_separator);
        for (const std::string* m : {&cfg->messages.send_suspended,
                                     &cfg->messages.rate_suspended, &cfg->messages.receive_rejected,
                                     &cfg->messages.recipients_per_message, &cfg->messages.login_denied})
            if (!fuzz::printable_line(*m)) fuzz::violated("accepted a message with a control character", *m);
        cfg->is_webmail_host("127.0.0.2");
        cfg->is_webmail_host("2001:db8::5");
    }
    through_snapshot(path, cfg, {reinterpret_cast<const char*>(data), size});
    through_c_api(path);
    return 0;
}
