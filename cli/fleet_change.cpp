#include "fleet_change.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "codec.hpp"
#include "signing.hpp"

namespace mailsuspend::cli {
namespace {

constexpr std::size_t kMinKeyBytes = 32;
constexpr std::size_t kStampDigits = 20;

bool from_hex(const std::string& hex, std::string& out) {
    out.assign(hex.size() / 2, '\0');
    std::size_t len = 0;
    const char* end = nullptr;
    if (sodium_hex2bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), hex.data(), hex.size(), nullptr,
                       &len, &end) != 0 ||
        end != hex.data() + hex.size())
        return false;
    out.resize(len);
    return true;
}

std::string mac_hex(const std::string& text, const FleetKey& key) { return key.mac_hex(text); }

std::string stamp_text(uint64_t hlc) {
    char buf[kStampDigits + 1];
    std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(hlc));
    return buf;
}

}  // namespace

std::string FleetKey::mac_hex(std::string_view text) const {
    if (!ready_) ready_.emplace(bytes);
    return ready_->hex(text);
}

bool load_fleet_key(const std::string& path, FleetKey& key, std::string& error_r) {
    if (sodium_init() < 0) return error_r = "libsodium cannot start", false;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return error_r = path + ": cannot read the fleet key", false;
    if (st.st_mode & S_IROTH)
        return error_r = path + ": the fleet key is readable by everyone (chmod 0600 or 0640)", false;
    std::ifstream in(path, std::ios::binary);
    key.bytes.assign(std::istreambuf_iterator<char>(in), {});
    if (!in.good() && !in.eof()) return error_r = path + ": cannot read the fleet key", false;
    if (key.bytes.size() < kMinKeyBytes)
        return error_r = path + ": the fleet key has " + std::to_string(key.bytes.size()) +
                         " bytes; it needs at least 32 (head -c 32 /dev/urandom > " + path + ")",
               false;
    return true;
}

std::string encode_fleet_change(const TargetRecord& r, const FleetKey& key) {
    TargetRecord sent = r;
    sent.seq = 0;  // a local sequence number means nothing on another node
    std::string blob;
    encode_portable_record(sent, blob);
    const std::string text = stamp_text(r.hlc) + " " + r.origin + " " +
                             to_hex(reinterpret_cast<const unsigned char*>(blob.data()), blob.size());
    return text + " " + mac_hex(text, key);
}

bool decode_fleet_change(const std::string& change, const std::string& target, const FleetKey& key,
                         TargetRecord& r, std::string& error_r) {
    const std::size_t last = change.rfind(' ');
    if (last == std::string::npos) return error_r = "not a signed change", false;
    const std::string text = change.substr(0, last), mac = change.substr(last + 1);
    const std::string expected = mac_hex(text, key);
    if (mac.size() != expected.size() || sodium_memcmp(mac.data(), expected.data(), mac.size()) != 0)
        return error_r = "bad signature (not signed with this fleet's key)", false;
    const std::size_t first = text.find(' '), second = text.find(' ', first + 1);
    std::string blob;
    if (first != kStampDigits || second == std::string::npos || !from_hex(text.substr(second + 1), blob))
        return error_r = "malformed change", false;
    if (!decode_record(reinterpret_cast<const unsigned char*>(blob.data()), blob.size(), r, error_r))
        return error_r = "malformed record: " + error_r, false;
    if (stamp_text(r.hlc) != text.substr(0, first) || r.origin != text.substr(first + 1, second - first - 1) ||
        r.origin.empty())
        return error_r = "the record's stamp or origin is not the envelope's", false;
    if (r.key != target) return error_r = "published for " + target + " but holds " + r.key, false;
    return true;
}

}  // namespace mailsuspend::cli
