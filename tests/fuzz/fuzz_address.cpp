// Address normalisation (address.hpp): every address a host or the CLI hands
// the core goes through normalise() first.  Input: one rules byte, then the
// address (and, when the rules byte says so, a default domain after a NUL).
//
// Checked beyond "no crash": a key is at most 254 octets, holds no space or
// control character (the header promises they are refused), has exactly the
// kind it reports, is the careful path's key too, and normalising a key again
// gives the same key.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "address.hpp"
#include "fuzz_util.hpp"

using namespace mailsuspend;

namespace {

AddressRules rules_from(uint8_t b, std::string_view& rest) {
    AddressRules rules;
    static const char* const kSeparators[] = {"+", "", "-", "@", ".", "+", "=", "_"};
    rules.subaddress_separator = kSeparators[b & 7];
    if (b & 8) {  // a default domain follows the address, after a NUL
        const auto nul = rest.find('\0');
        if (nul != std::string_view::npos) {
            rules.default_domain = std::string(rest.substr(nul + 1));
            rest = rest.substr(0, nul);
        } else {
            rules.default_domain = "example.com";
        }
    }
    return rules;
}

bool has_space_or_control(std::string_view key) {
    for (unsigned char c : key)
        if (c <= 0x20 || c == 0x7F) return true;
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    const AddressRules rules = rules_from(data[0], in);

    char buf[kKeyBufferSize];
    TargetKind kind{};
    std::string error;
    const std::size_t n = normalise(in, rules, buf, sizeof buf, &kind, &error);
    std::string error2;
    const std::string key = normalise(in, rules, error2);
    if (key != std::string_view(buf, n)) fuzz::violated("the two normalise() overloads disagree", in);
    // The checks' normalise_key: the same key, and its domain key found on the way.
    char check_buf[kKeyBufferSize];
    const KeyView k = normalise_key(in, rules, check_buf, sizeof check_buf);
    if (k.key != key) fuzz::violated("normalise_key disagrees with normalise", in);
    if (k.domain != domain_key_of(key)) fuzz::violated("normalise_key's domain key is not domain_key_of(key)", in);
    if (n == 0) {
        if (error.empty()) fuzz::violated("refused without a reason", in);
        return 0;
    }
    if (n > kMaxAddress) fuzz::violated("key longer than 254 octets", key);
    if (has_space_or_control(key)) fuzz::violated("key holds a space or control character", key);
    if ((kind == TargetKind::domain) != (key.front() == '@'))
        fuzz::violated("kind disagrees with the key", key);
    if (key.find('@') == std::string::npos) fuzz::violated("key without @", key);
    if (kind == TargetKind::mailbox && domain_key_of(key).empty())
        fuzz::violated("mailbox key without a domain key", key);

    // The careful path alone gives the same key (the one-pass path answers
    // most addresses; two keys for one mailbox would split its state).
    char careful[kKeyBufferSize];
    const std::size_t m = detail::normalise_careful(in, rules, careful, sizeof careful, nullptr, nullptr);
    if (std::string_view(careful, m) != key) fuzz::violated("the one-pass and careful paths disagree", in);

    // A key is its own normal form (the store is keyed by it; a panel may
    // send back what status printed).
    std::string again_error;
    const std::string again = normalise(key, rules, again_error);
    if (again != key) fuzz::violated("normalise(key) != key", key + " -> " + again + " " + again_error);
    return 0;
}
