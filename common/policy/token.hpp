// Sender tokens: an opaque header value the Exim module adds to outgoing
// mail (MAILSUSPEND_TOKEN_HEADER) that maps back to the authenticated account,
// so a spam complaint (ARF, RFC 5965) is attributed to the real sender even
// when From and the envelope are forged.
//
// A token is XChaCha20-Poly1305 (libsodium's IETF AEAD) of the issue time and
// the normalised account under a 32-byte key in <store.path>/token.key
// (created by `mailsuspend init`, mode 0640, group store.write_group so
// Exim can read it).  Only this host can make or read one; a changed octet
// fails the tag.  Wire form, base64url without padding:
//   version(1) = 2 | nonce(24, random) | ciphertext(8-byte big-endian time | account) | tag(16)
// with the version byte and "mailsuspend-token" as associated data.  A
// 24-byte random nonce never repeats in practice, and sealing one costs
// microseconds in a fresh process: libsodium fetches no cipher and keeps no
// random generator to seed (randombytes_buf is getrandom()).
// Version 1 (AES-256-GCM, 12-byte nonce, same layout otherwise; sealed
// before 2026-12) is still opened, with libsodium's AES-256-GCM, on CPUs with
// AES instructions; elsewhere it is refused with a message that says so.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mailsuspend/mailsuspend.h"  // MAILSUSPEND_TOKEN_HEADER: the header's name

namespace mailsuspend {

constexpr std::size_t kTokenKeySize = 32;
// Longest token text (an account of at most 320 octets: 369 octets in
// base64url), NUL excluded; MAILSUSPEND_TOKEN_MAX holds it with the NUL.
constexpr std::size_t kTokenMaxText = 492;
static_assert(kTokenMaxText < MAILSUSPEND_TOKEN_MAX);

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
    // The token's random nonce (hex, 48 digits; 24 for version 1): unique per sealed token, hence per
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
