// HMAC-SHA256 (libsodium) and hex, shared by the fleet's signed changes and
// the webhook's signature header.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace mailsuspend::cli {

std::string to_hex(const unsigned char* p, std::size_t n);

// The HMAC-SHA256 of text under key, as 64 lower-case hex digits.
std::string hmac_sha256_hex(std::string_view key, std::string_view text);

// A key that signs many texts (the fleet key): its pads are hashed once, so
// each HMAC costs the text's blocks and one more, not the key's set-up too.
class HmacKey {
public:
    explicit HmacKey(std::string_view key);
    // The same as hmac_sha256_hex(key, text).
    std::string hex(std::string_view text) const;

private:
    crypto_auth_hmacsha256_state ready_;
};

}  // namespace mailsuspend::cli
