// The webhook of `mailsuspend notify`: one POST per audit line, the line as
// the JSON body, signed.  libcurl is loaded here, by the CLI's notify command
// only (dlopen): no Dovecot or Exim process ever has it (tests/notify checks
// the modules), and no other command needs it to start.
#pragma once

#include <string>
#include <string_view>

namespace mailsuspend::cli {

// "sha256=<hex HMAC-SHA256 of body under secret>": the value of the
// X-Mailsuspend-Signature header.
std::string webhook_signature(std::string_view secret, std::string_view body);

// Reads alerts.webhook_secret_file: owned by root (or the agent's user),
// no access for group or others, at least 16 bytes (one final newline is
// not part of it).  false with why in error_r.
bool load_webhook_secret(const std::string& path, std::string& secret, std::string& error_r);

// Loads libcurl.so.4 and starts it; false with why (not installed) in error_r.
// Call once before the first Webhook.
bool load_curl(std::string& error_r);

class Webhook {
public:
    Webhook(std::string url, std::string secret);
    ~Webhook();
    Webhook(const Webhook&) = delete;
    Webhook& operator=(const Webhook&) = delete;

    // POSTs body; true on a 2xx answer, else false with what happened
    // (connection refused, timeout, "HTTP 500") in error_r.
    bool post(const std::string& body, std::string& error_r);

private:
    std::string url_, secret_;
    void* curl_ = nullptr;  // CURL*: the connection is kept between POSTs
};

}  // namespace mailsuspend::cli
