#include "token.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <cerrno>
#include <cstring>

namespace mailsuspend {
namespace {

// Version 2, sealed and opened: XChaCha20-Poly1305 (libsodium), random 24-byte nonce.
constexpr unsigned char kVersion = 2;
constexpr std::size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
// Version 1 (until 2026-12), opened only: AES-256-GCM, 12-byte nonce.
constexpr unsigned char kVersionGcm = 1;
constexpr std::size_t kNonceGcm = crypto_aead_aes256gcm_NPUBBYTES;
constexpr std::size_t kTag = 16;  // both ciphers' tag
static_assert(kTag == crypto_aead_xchacha20poly1305_ietf_ABYTES && kTag == crypto_aead_aes256gcm_ABYTES);
constexpr std::size_t kTime = 8;
constexpr std::size_t kMaxAccount = 320;
constexpr char kContext[] = "mailsuspend-token";

const char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const char kMimeAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Encodes n bytes with alphabet into out (no padding); returns the length.
std::size_t encode64(const unsigned char* in, std::size_t n, const char* alphabet, char* out) {
    std::size_t o = 0;
    for (std::size_t i = 0; i < n; i += 3) {
        const uint32_t b = (uint32_t{in[i]} << 16) | (i + 1 < n ? uint32_t{in[i + 1]} << 8 : 0) |
                           (i + 2 < n ? in[i + 2] : 0);
        out[o++] = alphabet[(b >> 18) & 63];
        out[o++] = alphabet[(b >> 12) & 63];
        if (i + 1 < n) out[o++] = alphabet[(b >> 6) & 63];
        if (i + 2 < n) out[o++] = alphabet[b & 63];
    }
    return o;
}

int value64(char c, bool url) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

std::optional<std::string> decode64(std::string_view text, bool url) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        if (!url && (c == '\n' || c == '\r' || c == ' ' || c == '\t')) continue;
        if (!url && c == '=') break;
        const int v = value64(c, url);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

void put_time(unsigned char* p, int64_t t) {
    for (int i = 7; i >= 0; --i, t >>= 8) p[i] = static_cast<unsigned char>(t & 0xFF);
}

int64_t get_time(const unsigned char* p) {
    uint64_t t = 0;
    for (int i = 0; i < 8; ++i) t = (t << 8) | p[i];
    return static_cast<int64_t>(t);
}

// libsodium is ready: sodium_init() picks the CPU's implementations and
// checks getrandom(); microseconds, once per process (later calls return 1).
bool sodium_ready() noexcept { return sodium_init() >= 0; }

// The associated data: the token's version byte and the context string.
struct Aad {
    unsigned char bytes[1 + sizeof kContext];
    explicit Aad(unsigned char version) {
        bytes[0] = version;
        std::memcpy(bytes + 1, kContext, sizeof kContext);
    }
};

// Opens ciphertext+tag ct (ct_len octets) of a token of version into plain;
// false when it does not verify.  Version 1 only where the CPU has AES
// instructions (libsodium's AES-256-GCM has no other implementation).
bool open_sealed(const TokenKey& key, unsigned char version, const unsigned char* nonce,
                 const unsigned char* ct, std::size_t ct_len, unsigned char* plain, std::string& error_r) {
    const Aad aad(version);
    unsigned long long len = 0;
    const int rc = version == kVersion
                       ? crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &len, nullptr, ct, ct_len, aad.bytes,
                                                                    sizeof aad.bytes, nonce, key.bytes.data())
                       : crypto_aead_aes256gcm_decrypt(plain, &len, nullptr, ct, ct_len, aad.bytes,
                                                       sizeof aad.bytes, nonce, key.bytes.data());
    if (rc != 0) error_r = "token does not verify: tampered, truncated, or sealed with another key";
    return rc == 0;
}

}  // namespace

std::string token_key_path(const std::string& store_dir) { return store_dir + "/token.key"; }

bool create_token_key(const std::string& store_dir, const std::string& group, std::string& error_r) {
    const std::string path = token_key_path(store_dir);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) return true;
    if (fd < 0) return error_r = path + ": " + std::strerror(errno), false;
    unsigned char key[kTokenKeySize];
    bool ok = false;
    const bool random = sodium_ready();
    if (random) randombytes_buf(key, sizeof key);
    if (!random) error_r = path + ": libsodium cannot start (no random source)";
    else if (::write(fd, key, sizeof key) != static_cast<ssize_t>(sizeof key) || ::fsync(fd) != 0)
        error_r = path + ": " + std::strerror(errno);
    else ok = true;
    if (ok && !group.empty()) {
        const struct group* gr = ::getgrnam(group.c_str());
        if (!gr) error_r = path + ": group '" + group + "' does not exist", ok = false;
        else if (::fchown(fd, static_cast<uid_t>(-1), gr->gr_gid) != 0)
            error_r = path + ": cannot give it to group " + group + ": " + std::strerror(errno), ok = false;
    }
    // Group-readable only once the group is right: Exim's group reads it.
    if (ok && ::fchmod(fd, 0640) != 0) error_r = path + ": " + std::strerror(errno), ok = false;
    sodium_memzero(key, sizeof key);
    ::close(fd);
    if (!ok) ::unlink(path.c_str());
    return ok;
}

std::optional<TokenKey> load_token_key(const std::string& store_dir, std::string& error_r) {
    const std::string path = token_key_path(store_dir);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_r = path + ": " + std::strerror(errno) + " (mailsuspend init creates it)";
        return std::nullopt;
    }
    TokenKey key;
    unsigned char extra;
    const ssize_t n = ::read(fd, key.bytes.data(), key.bytes.size());
    const ssize_t more = ::read(fd, &extra, 1);
    ::close(fd);
    if (n != static_cast<ssize_t>(key.bytes.size()) || more != 0) {
        error_r = path + ": not a " + std::to_string(kTokenKeySize) + "-byte key";
        return std::nullopt;
    }
    return key;
}

std::size_t seal_token(const TokenKey& key, std::string_view account, int64_t issued, char* out,
                       std::size_t size) noexcept {
    if (account.empty() || account.size() > kMaxAccount || !sodium_ready()) return 0;
    unsigned char raw[1 + kNonce + kTime + kMaxAccount + kTag];
    unsigned char plain[kTime + kMaxAccount];
    const std::size_t plain_len = kTime + account.size();
    const std::size_t raw_len = 1 + kNonce + plain_len + kTag;
    if ((raw_len * 4 + 2) / 3 + 1 > size) return 0;
    raw[0] = kVersion;
    randombytes_buf(raw + 1, kNonce);  // getrandom(): fresh in every process, forked or not
    put_time(plain, issued);
    std::memcpy(plain + kTime, account.data(), account.size());
    const Aad aad(kVersion);
    unsigned long long ct_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + 1 + kNonce, &ct_len, plain, plain_len, aad.bytes,
                                               sizeof aad.bytes, nullptr, raw + 1, key.bytes.data());
    sodium_memzero(plain, sizeof plain);
    const std::size_t n = encode64(raw, raw_len, kUrlAlphabet, out);
    out[n] = '\0';
    return n;
}

std::optional<OpenedToken> open_token(const TokenKey& key, std::string_view text, std::string& error_r) {
    auto trimmed = text;
    while (!trimmed.empty() && (trimmed.front() == ' ' || trimmed.front() == '\t')) trimmed.remove_prefix(1);
    while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\t')) trimmed.remove_suffix(1);
    auto raw = base64url_decode(trimmed);
    if (!raw) return error_r = "token is not base64url text", std::nullopt;
    if (raw->empty()) return error_r = "token is empty", std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(raw->data());
    if (p[0] != kVersion && p[0] != kVersionGcm)
        return error_r = "token version " + std::to_string(p[0]) + " is unknown", std::nullopt;
    if (!sodium_ready()) return error_r = "libsodium cannot start", std::nullopt;
    if (p[0] == kVersionGcm && !crypto_aead_aes256gcm_is_available())
        return error_r = "token version 1 (AES-256-GCM, sealed before 2026-12) cannot be opened on this CPU "
                         "(no AES instructions); open it on a host that has them",
               std::nullopt;
    const std::size_t nonce = p[0] == kVersion ? kNonce : kNonceGcm;
    if (raw->size() < 1 + nonce + kTime + 1 + kTag || raw->size() > 1 + nonce + kTime + kMaxAccount + kTag)
        return error_r = "token has the wrong length (truncated or not ours)", std::nullopt;
    const std::size_t ct_len = raw->size() - 1 - nonce;
    unsigned char plain[kTime + kMaxAccount + kTag];
    if (!open_sealed(key, p[0], p + 1, p + 1 + nonce, ct_len, plain, error_r)) return std::nullopt;
    OpenedToken t;
    t.issued = get_time(plain);
    t.account.assign(reinterpret_cast<const char*>(plain + kTime), ct_len - kTag - kTime);
    static const char kHex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < nonce; ++i) {  // the decoded bytes: one message, one id, however it is spelt
        t.message += kHex[p[1 + i] >> 4];
        t.message += kHex[p[1 + i] & 0xF];
    }
    sodium_memzero(plain, sizeof plain);
    return t;
}

std::string base64url_encode(std::string_view bytes) {
    std::string out((bytes.size() * 4 + 2) / 3, '\0');
    out.resize(encode64(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), kUrlAlphabet,
                        out.data()));
    return out;
}

std::optional<std::string> base64url_decode(std::string_view text) { return decode64(text, true); }

std::string base64_mime(std::string_view bytes) {
    std::string out;
    char line[80];
    for (std::size_t i = 0; i < bytes.size(); i += 57) {
        const std::size_t n = std::min<std::size_t>(57, bytes.size() - i);
        std::size_t len = encode64(reinterpret_cast<const unsigned char*>(bytes.data() + i), n,
                                   kMimeAlphabet, line);
        while (len % 4) line[len++] = '=';
        out.append(line, len);
        out += '\n';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) { return decode64(text, false); }

}  // namespace mailsuspend
