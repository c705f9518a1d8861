// Sender tokens: an opaque header value the Exim module adds to outgoing
// mail (MAILSUSPEND_TOKEN_HEADER) that maps back to the authenticated account,
// so a spam complaint (ARF, RFC 5965) is attributed to the real sender even
// when From and the envelope are forged.
//
// A token is AES-256-GCM (OpenSSL libcrypto) of the issue time and the
// normalised account under a 32-byte key in <store.path>/token.key
// (created by `mailsuspend init`, mode 0640, group store.write_group so
// Exim can read it).  Only this host can make or read one; a changed octet
// fails the tag.  Wire form, base64url without padding:
//   version(1) = 1 | nonce(12) | ciphertext(8-byte big-endian time | account) | tag(16)
// with the version byte and "mailsuspend-token" as associated data.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mailsuspend/mailsuspend.h"  // MAILSUSPEND_TOKEN_HEADER: the header's name

namespace mailsuspend {

constexpr std::size_t kTokenKeySize = 32;
// Longest token text (an account of at most 320 octets), NUL excluded.
constexpr std::size_t kTokenMaxText = 480;

struct TokenKey {
    std::array<unsigned char, kTokenKeySize> bytes{};
};

std::string token_key_path(const std::string& store_dir);
// Creates <dir>/token.key with fresh random bytes unless it exists (mode
// 0640, group given unless empty).  false with the error in error_r.
bool create_token_key(const std::string& store_dir, const std::string& group, std::string& error_r);
// Reads the key; nullopt and error_r when missing, unreadable or the wrong size.
std::optional<TokenKey> load_token_key(const std::string& store_dir, std::string& error_r);

// Seals account (a normalised key) issued at time issued into out[0..size):
// returns the length written (NUL-terminated), 0 when it does not fit or
// the crypto library fails.  No exceptions.
std::size_t seal_token(const TokenKey& key, std::string_view account, int64_t issued, char* out,
                       std::size_t size) noexcept;

struct OpenedToken {
    std::string account;
    int64_t issued = 0;
    // The token's random nonce (hex): unique per sealed token, hence per
    // message (the Exim module seals one token per message).  Reports of one
    // message count once by it.
    std::string message;
};
// Verifies and opens a token; nullopt with error_r when it is malformed or
// does not verify (tampered, truncated, or sealed under another key).
std::optional<OpenedToken> open_token(const TokenKey& key, std::string_view text, std::string& error_r);

// base64url without padding, and back (nullopt on a bad character).
std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);
// Standard base64 (MIME) in lines of 76 characters ending in LF.
std::string base64_mime(std::string_view bytes);
// Decodes standard base64, skipping whitespace; nullopt on a bad character.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace mailsuspend
