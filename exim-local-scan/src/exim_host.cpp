// Exim's side of exim_host.hpp: the only file that includes local_scan.h.
#define LOCAL_SCAN
#include "exim_host.hpp"

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

}  // namespace mailsuspend_exim
