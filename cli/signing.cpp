#include "signing.hpp"

namespace mailsuspend::cli {

std::string to_hex(const unsigned char* p, std::size_t n) {
    std::string out(n * 2 + 1, '\0');
    sodium_bin2hex(out.data(), out.size(), p, n);
    out.pop_back();
    return out;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view text) {
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    crypto_auth_hmacsha256_final(&st, mac);
    return to_hex(mac, sizeof mac);
}

HmacKey::HmacKey(std::string_view key) {
    crypto_auth_hmacsha256_init(&ready_, reinterpret_cast<const unsigned char*>(key.data()), key.size());
}

std::string HmacKey::hex(std::string_view text) const {
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st = ready_;
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(text.data()), text.size());
    crypto_auth_hmacsha256_final(&st, mac);
    return to_hex(mac, sizeof mac);
}

}  // namespace mailsuspend::cli
