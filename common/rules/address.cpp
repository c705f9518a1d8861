#include "address.hpp"

#include <dlfcn.h>
#include <idn2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "text.hpp"

namespace mailsuspend {
namespace {

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool fail(std::string* error_r, std::string message) {
    if (error_r) *error_r = std::move(message);
    return false;
}

// Classes of octets, looked up once per octet of an address (every check
// normalises one: a table, not a search of a set per octet).
constexpr uint8_t kLocalSpecial = 1;  // may not stand unquoted in a local part
constexpr uint8_t kLabelOctet = 2;    // may stand in a (lower-cased) domain label

constexpr std::array<uint8_t, 256> octet_classes() {
    std::array<uint8_t, 256> t{};
    for (int c = 0; c <= 0x20; ++c) t[c] |= kLocalSpecial;
    t[0x7F] |= kLocalSpecial;
    for (const char c : std::string_view("\"\\()<>,;:[]@")) t[static_cast<unsigned char>(c)] |= kLocalSpecial;
    for (int c = 'a'; c <= 'z'; ++c) t[c] |= kLabelOctet;
    for (int c = '0'; c <= '9'; ++c) t[c] |= kLabelOctet;
    t['-'] |= kLabelOctet;
    t['_'] |= kLabelOctet;
    return t;
}
constexpr std::array<uint8_t, 256> kOctetClasses = octet_classes();

// An octet as the fast path writes it into a key: lower-cased, or 0 when it
// cannot stand there as written (the careful path then decides and explains).
constexpr char lower(int c) { return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c); }
constexpr std::array<char, 256> local_octets() {
    std::array<char, 256> t{};
    for (int c = 0x21; c < 0x7F; ++c)
        if (!(kOctetClasses[c] & kLocalSpecial)) t[c] = lower(c);
    return t;
}
constexpr std::array<char, 256> domain_octets() {
    std::array<char, 256> t{};
    for (int c = 0; c < 0x80; ++c)
        if (kOctetClasses[static_cast<unsigned char>(lower(c))] & kLabelOctet) t[c] = lower(c);
    t['.'] = '.';
    return t;
}
constexpr std::array<char, 256> kLocalOctets = local_octets();
constexpr std::array<char, 256> kDomainOctets = domain_octets();

// Characters a local part may not hold unquoted (RFC 5322 specials, space, controls).
bool bad_local_char(unsigned char c) { return kOctetClasses[c] & kLocalSpecial; }

// The base local part (tag already dropped) as a key: at most 64 octets, no
// space, control or special character, UTF-8.
bool check_local(std::string_view local, std::string* error_r) {
    if (local.empty()) return fail(error_r, "empty local part");
    if (local.size() > kMaxLocalPart)
        return fail(error_r, "local part is " + std::to_string(local.size()) + " octets, at most " +
                               std::to_string(kMaxLocalPart));
    bool ascii = true;
    for (std::size_t i = 0; i < local.size(); ++i) {
        const auto c = static_cast<unsigned char>(local[i]);
        if (bad_local_char(c))
            return fail(error_r, "local part has a space, control or special character at octet " +
                                   std::to_string(i));
        ascii = ascii && c < 0x80;
    }
    // SMTPUTF8 local parts stay as written, but must be UTF-8: a key is
    // printed in JSON (status, list, audit) and in replies.
    if (!ascii) {
        if (std::string why; !check_free_text(local, kMaxLocalPart, why))
            return fail(error_r, "local part " + why);
    }
    return true;
}

// True when local is one RFC 5321 quoted-string ("..." with \-escapes and
// no bare '"' inside).  Anything else is taken as written: a host may pass
// the local part already unquoted (Exim's $local_part of "bob+x y"@ is bob+x y).
bool is_quoted_string(std::string_view local) {
    if (local.size() < 2 || local.front() != '"' || local.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < local.size(); ++i) {
        if (local[i] == '"') return false;
        if (local[i] == '\\' && ++i + 1 >= local.size()) return false;  // escapes the closing quote
    }
    return true;
}

// Writes the mailbox part of local to out the way Exim's routers (and
// Dovecot's recipient_delimiter) resolve the mailbox: a quoted-string is
// unquoted and unescaped, then everything from the first subaddress
// separator on is dropped (not at octet 0: "+x" stays "+x"), then the base is
// checked and ASCII lower-cased.  Only the base is limited to 64 octets: a
// long tag still names its mailbox.  Returns the length, 0 on error.
std::size_t put_local(std::string_view local, const std::string& separator, char* out,
                      std::size_t room, std::string* error_r) {
    if (local.empty()) return fail(error_r, "empty local part"), 0;
    const bool quoted = is_quoted_string(local);
    if (quoted) local = local.substr(1, local.size() - 2);
    std::size_t base = 0;  // octets of the base, counted past what out can hold
    for (std::size_t i = 0; i < local.size(); ++i) {
        char c = local[i];
        if (quoted && c == '\\') c = local[++i];  // is_quoted_string: never the last octet
        if (base > 0 && !separator.empty() && c == separator.front()) break;
        if (base < room) out[base] = c;
        ++base;
    }
    if (base > kMaxLocalPart || base > room)
        return fail(error_r, "local part is " + std::to_string(base) + " octets, at most " +
                               std::to_string(kMaxLocalPart)),
               0;
    const std::size_t n = base;
    if (!check_local(std::string_view(out, n), error_r)) return 0;
    for (std::size_t i = 0; i < n; ++i) out[i] = ascii_lower(out[i]);
    return n;
}

bool check_label(std::string_view label, std::string* error_r) {
    if (label.empty()) return fail(error_r, "empty label in domain");
    if (label.size() > 63) return fail(error_r, "domain label longer than 63 octets");
    if (label.front() == '-' || label.back() == '-')
        return fail(error_r, "domain label '" + escape_for_display(label, 80) + "' starts or ends with '-'");
    for (char c : label)
        if (!(kOctetClasses[static_cast<unsigned char>(c)] & kLabelOctet))
            return fail(error_r, "domain '" + escape_for_display(label, 80) + "' has a character that is not a "
                               "letter, digit or hyphen");
    return true;
}

// The common case in one pass: lower-cases a domain of valid labels in
// place; false for anything else, which check_ascii_domain's careful path
// handles (and explains).
bool plain_domain(char* d, std::size_t len) {
    std::size_t label = 0;
    for (std::size_t i = 0; i < len; ++i) {
        const char c = ascii_lower(d[i]);
        d[i] = c;
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-') return false;
            label = 0;
        } else if (!(kOctetClasses[static_cast<unsigned char>(c)] & kLabelOctet) || (label == 0 && c == '-') ||
                   ++label > 63) {
            return false;
        }
    }
    return label > 0 && d[len - 1] != '-';
}

// Lower-cases and checks an ASCII domain in place.
bool check_ascii_domain(char* d, std::size_t len, std::string* error_r) {
    if (len == 0) return fail(error_r, "empty domain");
    if (len > kMaxDomain)
        return fail(error_r, "domain is " + std::to_string(len) + " octets, at most " +
                               std::to_string(kMaxDomain));
    if (plain_domain(d, len)) return true;
    for (std::size_t i = 0; i < len; ++i) d[i] = ascii_lower(d[i]);
    if (d[0] == '[') {  // address literal: kept as written
        if (len < 3 || d[len - 1] != ']') return fail(error_r, "unterminated address literal in domain");
        // RFC 5321 dcontent: printable ASCII but [ \ ]; no space or control
        // character may reach a key (keys are printed in replies and logs).
        // No '@' either: a key splits at its last '@' (a default_domain of
        // "[@]" made keys that did not normalise to themselves).
        for (std::size_t i = 1; i + 1 < len; ++i) {
            const auto c = static_cast<unsigned char>(d[i]);
            if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' || c == '@')
                return fail(error_r, "address literal has a space, control or bracket at octet " +
                                       std::to_string(i));
        }
        return true;
    }
    std::string_view rest(d, len);
    while (true) {
        const auto dot = rest.find('.');
        if (!check_label(rest.substr(0, dot), error_r)) return false;
        if (dot == std::string_view::npos) return true;
        rest.remove_prefix(dot + 1);
    }
}

// libidn2, loaded on the first non-ASCII domain rather than linked: every
// Dovecot mail process that loads the core would otherwise map libidn2 and
// libunistring and bind their symbols (+0.36 ms of CPU per session, measured;
// bench/results/2026-12-02.md "What a mail process pays"), for domains that are nearly always
// ASCII.  systemd loads libidn2 the same way.  The prototypes come from
// <idn2.h>, so a changed signature fails to compile.
class Idn2 {
public:
    decltype(&idn2_to_ascii_8z) to_ascii_8z = nullptr;
    decltype(&idn2_strerror) strerror = nullptr;
    decltype(&idn2_free) free = nullptr;
    std::string load_error;

    bool loaded() const { return free != nullptr; }

    static const Idn2& get() {
        static const Idn2 library;  // thread-safe, once per process
        return library;
    }

private:
    static constexpr const char* kSoname = "libidn2.so.0";

    Idn2() {
        void* dl = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);  // never closed
        if (!dl) {
            load_error = std::string(kSoname) + " cannot be loaded (" + ::dlerror() + ")";
            return;
        }
        to_ascii_8z = reinterpret_cast<decltype(to_ascii_8z)>(::dlsym(dl, "idn2_to_ascii_8z"));
        strerror = reinterpret_cast<decltype(strerror)>(::dlsym(dl, "idn2_strerror"));
        auto* release = reinterpret_cast<decltype(free)>(::dlsym(dl, "idn2_free"));
        if (!to_ascii_8z || !strerror || !release) {
            load_error = std::string(kSoname) + " lacks idn2_to_ascii_8z, idn2_strerror or idn2_free";
            return;
        }
        free = release;  // last: loaded() means all three are there
    }
};

bool is_ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

// Writes the normalised domain at out; returns its length or 0 on error.
std::size_t put_domain(std::string_view domain, char* out, std::size_t room, std::string* error_r) {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (is_ascii(domain)) {
        if (domain.size() > room) return fail(error_r, "domain too long"), 0;
        std::memcpy(out, domain.data(), domain.size());
        return check_ascii_domain(out, domain.size(), error_r) ? domain.size() : 0;
    }
    // IDN: the A-label form is the key, so a UTF-8 and an xn-- spelling match.
    const Idn2& idn2 = Idn2::get();
    if (!idn2.loaded())
        return fail(error_r, "cannot convert an international domain: " + idn2.load_error), 0;
    std::string utf8(domain);
    char* ascii = nullptr;
    const int rc = idn2.to_ascii_8z(utf8.c_str(), &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
        fail(error_r, std::string("invalid international domain: ") + idn2.strerror(rc));
        return 0;
    }
    const std::size_t len = std::strlen(ascii);
    const bool fits = len <= room;
    if (fits) std::memcpy(out, ascii, len);
    idn2.free(ascii);
    if (!fits) return fail(error_r, "domain too long"), 0;
    return check_ascii_domain(out, len, error_r) ? len : 0;
}

// The base of an unquoted ASCII local part, lower-cased into out, and where
// it stopped (the '@', the separator, or anything the careful path must
// see).  The loop is bounded by the 64 octets a base may have, so it tests
// only the octet (every octet of every check passes here).
std::size_t put_plain_base(const char* p, const char* end, char sep, char* out, const char** stop_r) {
    const char* limit = p + std::min<std::size_t>(static_cast<std::size_t>(end - p), kMaxLocalPart + 1);
    const char* q = p;
    for (; q < limit; ++q, ++out) {
        const char o = *q;
        const char c = kLocalOctets[static_cast<unsigned char>(o)];  // 0: '@', special, non-ASCII
        if (c == 0 || o == sep) break;
        *out = c;
    }
    *stop_r = q;
    const auto n = static_cast<std::size_t>(q - p);
    return n <= kMaxLocalPart ? n : 0;
}

// Whether the label that ends before out[i] (it began at out[start]) may
// stand in a domain: not empty, at most 63 octets, no '-' at its end (its
// start was checked when the '-' was written).
bool label_ends_well(const char* out, std::size_t start, std::size_t i) {
    return i > start && i - start <= 63 && out[i - 1] != '-';
}

// An ASCII domain of valid labels, lower-cased into out (a trailing dot
// dropped); 0 for anything the careful path must see (put_domain).  Letters,
// digits and '_' sort above '.' and '-': the loop tests each octet once, and
// only the rare ones further.
std::size_t put_plain_domain(const char* p, const char* end, char* out) {
    if (p < end && end[-1] == '.') --end;
    const auto len = static_cast<std::size_t>(end - p);
    if (len == 0 || len > kMaxDomain) return 0;
    std::size_t label = 0;  // where the current label starts
    for (std::size_t i = 0; i < len; ++i) {
        const char c = kDomainOctets[static_cast<unsigned char>(p[i])];
        out[i] = c;
        if (c > '.') continue;
        if (c == 0 || (c == '-' && i == label)) return 0;
        if (c == '.') {
            if (!label_ends_well(out, label, i)) return 0;
            label = i + 1;
        }
    }
    return label_ends_well(out, label, len) ? len : 0;  // no empty last label ("a@b.." ends in one)
}

}  // namespace

namespace detail {

// The common case, "local[+tag]@domain" in plain ASCII: one pass over each
// part, no second look.  0 for anything else, which normalise's careful
// path handles (and explains).  The base ends at the '@' (no search for it)
// unless a tag follows: a tag may hold an '@', so the last one ends it.
std::size_t normalise_plain(std::string_view in, const AddressRules& rules, char* out, std::size_t* at_r) {
    const char* begin = in.data();
    const char* end = begin + in.size();
    const char sep = rules.subaddress_separator.empty() ? '@' : rules.subaddress_separator.front();
    const char* stop = nullptr;
    const std::size_t local = put_plain_base(begin, end, sep, out, &stop);
    if (local == 0 || stop == end) return 0;
    const char* at = stop;
    if (*stop != '@') {  // the separator: the tag runs to the last '@'
        if (*stop != sep) return 0;
        at = static_cast<const char*>(::memrchr(stop, '@', static_cast<std::size_t>(end - stop)));
        if (!at) return 0;
    }
    out[local] = '@';
    const std::size_t domain = put_plain_domain(at + 1, end, out + local + 1);
    const std::size_t n = domain == 0 ? 0 : local + 1 + domain;
    if (at_r) *at_r = local;
    return n <= kMaxAddress ? n : 0;
}

std::size_t normalise_careful(std::string_view in, const AddressRules& rules, char* out,
                              std::size_t out_size, TargetKind* kind_r, std::string* error_r) {
    if (in.empty()) return fail(error_r, "empty address"), 0;
    // No limit on the input: only the key is limited (a long +tag still
    // names its mailbox, and Exim routes it there).
    if (out_size < kKeyBufferSize) return fail(error_r, "internal: key buffer too small"), 0;
    std::string_view local, domain;
    const auto at = in.rfind('@');
    if (at == std::string_view::npos) {
        if (rules.default_domain.empty())
            return fail(error_r, "'" + escape_for_display(in, 80) + "' has no @domain (set address.default_domain "
                               "to accept bare user names)"),
                   0;
        local = in;
        domain = rules.default_domain;
    } else {
        local = in.substr(0, at);
        domain = in.substr(at + 1);
    }
    std::size_t n = 0;
    const bool is_domain_target = local.empty() && at == 0;
    if (!is_domain_target) {
        n = put_local(local, rules.subaddress_separator, out, kMaxLocalPart + 1, error_r);
        if (n == 0) return 0;
    }
    out[n++] = '@';
    const std::size_t dlen = put_domain(domain, out + n, out_size - n, error_r);
    if (dlen == 0) return 0;
    n += dlen;
    if (n > kMaxAddress)
        return fail(error_r, "normalised address is " + std::to_string(n) + " octets, at most " +
                               std::to_string(kMaxAddress)),
               0;
    if (kind_r) *kind_r = is_domain_target ? TargetKind::domain : TargetKind::mailbox;
    return n;
}

}  // namespace detail

namespace detail {
// normalise_key past the mask path: the one-pass path, then the careful one.
KeyView normalise_key_further(std::string_view in, const AddressRules& rules, char* out, std::size_t out_size,
                              TargetKind* kind_r, std::string* error_r) {
    std::size_t at = 0;
    if (const std::size_t n = out_size >= kKeyBufferSize ? normalise_plain(in, rules, out, &at) : 0) {
        if (kind_r) *kind_r = TargetKind::mailbox;
        return {std::string_view(out, n), std::string_view(out + at, n - at)};
    }
    const std::string_view key(out, normalise_careful(in, rules, out, out_size, kind_r, error_r));
    return {key, domain_key_of(key)};
}
}  // namespace detail

std::size_t normalise(std::string_view in, const AddressRules& rules, char* out,
                      std::size_t out_size, TargetKind* kind_r, std::string* error_r) {
    return normalise_key(in, rules, out, out_size, kind_r, error_r).key.size();
}

std::string normalise(std::string_view in, const AddressRules& rules, std::string& error_r) {
    char buf[kKeyBufferSize];
    const std::size_t n = normalise(in, rules, buf, sizeof buf, nullptr, &error_r);
    return std::string(buf, n);
}

std::string_view domain_key_of(std::string_view mailbox_key) {
    const auto* at = static_cast<const char*>(::memrchr(mailbox_key.data(), '@', mailbox_key.size()));
    return at ? mailbox_key.substr(static_cast<std::size_t>(at - mailbox_key.data())) : std::string_view{};
}

namespace {
std::string regex_quoted(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (std::strchr("\\^$.|?*+()[]{}", c)) out += '\\';
        out += c;
    }
    return out;
}
}  // namespace

std::string address_regex(std::string_view key, const AddressRules& rules) {
    const std::size_t at = key.find('@');
    if (at == std::string_view::npos) return "(?i)^" + regex_quoted(key) + "$";
    const std::string domain = regex_quoted(key.substr(at)) + "$";
    if (at == 0) return "(?i)" + domain;
    // Exim's queue keeps a quoted local part quoted: "bob"@, "bob+x y"@ and
    // "bob+x@y"@ match too.  (A needlessly escaped base such as "\bob"@ is
    // not matched: Exim's next queue run delivers it.)
    const std::string base = regex_quoted(key.substr(0, at));
    if (rules.subaddress_separator.empty()) return "(?i)^\"?" + base + "\"?" + domain;
    const std::string sep = regex_quoted(rules.subaddress_separator);
    return "(?i)^(\"" + base + sep + ".*\"|\"?" + base + "(" + sep + "[^@]*)?\"?)@" +
           domain.substr(1);
}

}  // namespace mailsuspend
