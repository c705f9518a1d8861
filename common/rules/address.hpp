// Address normalisation: the one place that decides how a written address
// becomes a store key.  Rules (README, "Addresses"):
//  - "user@example.com" is a mailbox, "@example.com" a whole domain;
//  - the domain is lower-cased, a trailing dot dropped, UTF-8 (IDN) labels
//    converted to their A-label (xn--) form, labels checked (LDH, <= 63);
//  - the local part is lower-cased (ASCII) like every hosting panel treats
//    mailboxes; a "+tag" sub-address suffix is dropped (separator from
//    address.subaddress_separator, empty = keep);
//  - a bare name without "@" takes address.default_domain when set;
//  - quoted local parts, spaces, control characters, more than 64 octets of
//    local part or more than 254 octets in all are refused with a reason.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailsuspend {

constexpr std::size_t kMaxAddress = 254;
constexpr std::size_t kMaxLocalPart = 64;
constexpr std::size_t kMaxDomain = 253;
// Room for any key normalise() can produce (IDN expansion included).
constexpr std::size_t kKeyBufferSize = 320;

struct AddressRules {
    std::string default_domain;        // for bare names; empty = refuse them
    std::string subaddress_separator = "+";
    bool operator==(const AddressRules&) const = default;
};

enum class TargetKind { mailbox, domain };

// Normalises in into out[0..len) without allocating for ASCII input.
// Returns the key length, or 0 with the reason in *error_r unless it is
// null (the reason may allocate: the error path is not hot).
std::size_t normalise(std::string_view in, const AddressRules& rules, char* out,
                      std::size_t out_size, TargetKind* kind_r, std::string* error_r);

// normalise's three paths, apart for the tests that they agree: the mask
// path for short "name@example.com" in letters, digits, '.', '-' and '_'
// (address_short.cpp), the one pass over plain ASCII "local[+tag]@domain"
// (both 0: not that, or not valid; out holds kKeyBufferSize octets) and the
// careful path that handles and explains every address.
// The two first set *at_r to the index of the key's '@' when they give one.
namespace detail {
std::size_t normalise_short(std::string_view in, const AddressRules& rules, char* out,
                            std::size_t* at_r = nullptr);
std::size_t normalise_plain(std::string_view in, const AddressRules& rules, char* out,
                            std::size_t* at_r = nullptr);
std::size_t normalise_careful(std::string_view in, const AddressRules& rules, char* out,
                              std::size_t out_size, TargetKind* kind_r, std::string* error_r);
}  // namespace detail

// Convenience for non-hot callers: "" and error_r set when invalid.
std::string normalise(std::string_view in, const AddressRules& rules, std::string& error_r);

// "@example.com" for a mailbox key "user@example.com" (view into key).
std::string_view domain_key_of(std::string_view mailbox_key);

// A key in out and its domain key, a view into it ("@example.com" for
// "user@example.com" and for "@example.com").
struct KeyView {
    std::string_view key, domain;
};
namespace detail {
KeyView normalise_key_further(std::string_view in, const AddressRules& rules, char* out, std::size_t out_size,
                              TargetKind* kind_r, std::string* error_r);
}
// normalise() that also gives the key's domain key: the fast paths know
// where the '@' is, and no search for it follows (the checks look up both).
// Empty when in is no key.  The mask path inline: every check of a common
// address ends there.
inline KeyView normalise_key(std::string_view in, const AddressRules& rules, char* out, std::size_t out_size,
                             TargetKind* kind_r = nullptr, std::string* error_r = nullptr) {
    std::size_t at = 0;
    if (out_size >= kKeyBufferSize)
        if (const std::size_t n = detail::normalise_short(in, rules, out, &at)) {
            if (kind_r) *kind_r = TargetKind::mailbox;
            return {std::string_view(out, n), std::string_view(out + at, n - at)};
        }
    return detail::normalise_key_further(in, rules, out, out_size, kind_r, error_r);
}

// A regular expression (PCRE, as Exim's -Rr and -Sr take) matching every
// address that normalises to key, in any letter case: for "bob@example.com"
// also "Bob+news@Example.COM"; for "@example.com" every address of the domain.
std::string address_regex(std::string_view key, const AddressRules& rules);

}  // namespace mailsuspend
