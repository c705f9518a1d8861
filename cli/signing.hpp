// HMAC-SHA256 (libsodium) and hex, shared by the fleet's signed changes and
// the webhook's signature header.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailsuspend::cli {

std::string to_hex(const unsigned char* p, std::size_t n);

// The HMAC-SHA256 of text under key, as 64 lower-case hex digits.
std::string hmac_sha256_hex(std::string_view key, std::string_view text);

}  // namespace mailsuspend::cli
