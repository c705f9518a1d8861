// Exim's side of exim_host.hpp: the only file that includes local_scan.h.
#define LOCAL_SCAN
#include "exim_host.hpp"

#include <dlfcn.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

extern "C" {
#include <local_scan.h>
}

namespace mailsuspend_exim {

void log_main(const char* format, ...) noexcept {
    char line[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(line, sizeof line, format, args);
    va_end(args);
    log_write(0, LOG_MAIN, "mailsuspend: %s", line);
}

const char* expand_variable(const char* expression) noexcept {
    // expand_string wants a writable pointer; it does not modify the string.
    const uschar* value = expand_string(const_cast<uschar*>(reinterpret_cast<const uschar*>(expression)));
    return value ? reinterpret_cast<const char*>(value) : "";
}

const char* smtp_auth_id() noexcept {
    if (!sender_host_authenticated || !*sender_host_authenticated) return "";
    return expand_variable("$authenticated_id");
}

namespace {
int g_dlfunc_available = -1;  // unknown
}

void note_dlfunc_available() noexcept { g_dlfunc_available = 1; }

bool dlfunc_available() noexcept {
    int& cached = g_dlfunc_available;
    if (cached < 0) {
        // A light binary fails the expansion ("not included in this binary");
        // a heavy one calls our own mailsuspend_ping through the same .so.
        char expression[4200];
        const char* self = local_scan_path ? reinterpret_cast<const char*>(local_scan_path) : "";
        std::snprintf(expression, sizeof expression, "${dlfunc{%s}{mailsuspend_ping}}", self);
        cached = *self != '\0' && std::strcmp(expand_variable(expression), "pong") == 0 ? 1 : 0;
    }
    return cached == 1;
}

namespace {
// Whether local_scan_path names this module's file: only ours may be called
// with no message (another module's local_scan would take -1 for a message).
bool local_scan_path_is_this_module() noexcept {
    Dl_info self{};
    struct stat ours {}, configured {};
    return ::dladdr(reinterpret_cast<void*>(&load_local_scan_in_daemon), &self) != 0 && self.dli_fname &&
           ::stat(self.dli_fname, &ours) == 0 &&
           ::stat(reinterpret_cast<const char*>(local_scan_path), &configured) == 0 &&
           ours.st_dev == configured.st_dev && ours.st_ino == configured.st_ino;
}
}  // namespace

void load_local_scan_in_daemon() noexcept {
    static bool loaded = false;
    if (loaded || !local_scan_path || *local_scan_path == '\0') return;
    loaded = true;
    if (!local_scan_path_is_this_module()) return;
    // Exim's local_scan, exported by the binary (the global scope finds it
    // first; were it ours, it would answer -1 at once all the same).
    using LocalScan = int (*)(int, uschar**);
    const auto exim_local_scan = reinterpret_cast<LocalScan>(::dlsym(RTLD_DEFAULT, "local_scan"));
    if (!exim_local_scan) return;
    uschar* ignored = nullptr;
    exim_local_scan(-1, &ignored);
}

char* exim_copy(const char* text) noexcept {
    return reinterpret_cast<char*>(string_copy(reinterpret_cast<const uschar*>(text)));
}

const char* current_message_id() noexcept {
    return ::message_id && *::message_id ? reinterpret_cast<const char*>(::message_id) : "-";
}

const char* current_sender() noexcept {
    return sender_address ? reinterpret_cast<const char*>(sender_address) : "";
}

const char* current_client_ip() noexcept {
    return sender_host_address && *sender_host_address
               ? reinterpret_cast<const char*>(sender_host_address)
               : nullptr;
}

int current_recipient_count() noexcept { return recipients_count; }

const char* current_recipient(int index) noexcept {
    return reinterpret_cast<const char*>(recipients_list[index].address);
}

bool remove_recipient(const char* address) noexcept {
    return receive_remove_recipient(const_cast<uschar*>(reinterpret_cast<const uschar*>(address)));
}

namespace {
constexpr char kDeletedHeader = '*';  // Exim's htype_old

// "Name:" or "Name :" (obsolete syntax, RFC 5322 4.5) at the start of text.
bool header_named(const header_line* h, const char* name) noexcept {
    const size_t len = std::strlen(name);
    if (h->slen <= static_cast<int>(len) || strncasecmp(reinterpret_cast<const char*>(h->text), name, len) != 0)
        return false;
    const char* rest = reinterpret_cast<const char*>(h->text) + len;
    while (*rest == ' ' || *rest == '\t') ++rest;
    return *rest == ':';
}
}  // namespace

int drop_header(const char* name) noexcept {
    int dropped = 0;
    for (header_line* h = header_list; h; h = h->next) {
        if (h->type == kDeletedHeader || !header_named(h, name)) continue;
        h->type = kDeletedHeader;
        ++dropped;
    }
    return dropped;
}

void add_header(const char* name, const char* value) noexcept {
    // Called through its address, which the loader fills in when it loads
    // the module: a lazily bound call would be bound again in every process
    // the daemon forks (module.cpp, bind_message_path).
    void (*volatile add)(int, const char*, ...) = header_add;
    add(' ', "%s: %s\n", name, value);
}

std::string message_sample(int data_fd, std::size_t body_max) {
    std::string sample;
    for (const header_line* h = header_list; h; h = h->next)
        if (h->type != kDeletedHeader) sample.append(reinterpret_cast<const char*>(h->text), h->slen);
    sample += '\n';
    const off_t body_start = ::lseek(data_fd, 0, SEEK_CUR);
    if (body_start < 0) return sample;
    const std::size_t header_size = sample.size();
    sample.resize(header_size + body_max);
    std::size_t got = 0;
    while (got < body_max) {
        const ssize_t n = ::pread(data_fd, sample.data() + header_size + got, body_max - got,
                                  body_start + static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // end of the body, or an error: keep what there is
        got += static_cast<std::size_t>(n);
    }
    sample.resize(header_size + got);
    return sample;
}

}  // namespace mailsuspend_exim
