// Address normalisation: how a written address becomes a store key.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <regex>
#include <string>

#include "address.hpp"

using namespace mailsuspend;

namespace {

struct Normalised {
    std::string key;
    std::string error;
    TargetKind kind = TargetKind::mailbox;
};

Normalised norm(std::string_view in, const AddressRules& rules = {}) {
    Normalised n;
    char buf[kKeyBufferSize];
    const std::size_t len = normalise(in, rules, buf, sizeof buf, &n.kind, &n.error);
    n.key.assign(buf, len);
    return n;
}

std::string key_of(std::string_view in, const AddressRules& rules = {}) { return norm(in, rules).key; }

// Expects in to be refused with an error containing fragment.
void expect_refused(std::string_view in, const std::string& fragment, const AddressRules& rules = {}) {
    const Normalised n = norm(in, rules);
    EXPECT_EQ(n.key, "") << "accepted: " << in;
    EXPECT_NE(n.error.find(fragment), std::string::npos)
        << "input '" << in << "' error '" << n.error << "' lacks '" << fragment << "'";
}

}  // namespace

TEST(Address, LowerCasesDomainAndLocalPart) {
    EXPECT_EQ(key_of("Alice@Example.COM"), "alice@example.com");
    EXPECT_EQ(key_of("ALICE@EXAMPLE.COM"), key_of("alice@example.com"));
    EXPECT_EQ(norm("Alice@Example.COM").kind, TargetKind::mailbox);
}

TEST(Address, StripsPlusTag) {
    EXPECT_EQ(key_of("alice+news@example.com"), "alice@example.com");
    EXPECT_EQ(key_of("Alice+News+More@Example.com"), "alice@example.com");
    // A leading separator is not a tag: the whole local part is the name.
    EXPECT_EQ(key_of("+tag@example.com"), "+tag@example.com");
}

TEST(Address, KeepsTagWhenSeparatorIsOff) {
    AddressRules rules;
    rules.subaddress_separator = "";
    EXPECT_EQ(key_of("alice+news@example.com", rules), "alice+news@example.com");
}

TEST(Address, OtherSeparator) {
    AddressRules rules;
    rules.subaddress_separator = "-";
    EXPECT_EQ(key_of("alice-news@example.com", rules), "alice@example.com");
    EXPECT_EQ(key_of("alice+news@example.com", rules), "alice+news@example.com");
}

TEST(Address, IdnUtf8DomainEqualsALabel) {
    const std::string utf8 = key_of("user@b\xC3\xBC" "cher.example");  // bücher.example
    EXPECT_EQ(utf8, "user@xn--bcher-kva.example");
    EXPECT_EQ(utf8, key_of("user@xn--bcher-kva.example"));
    EXPECT_EQ(utf8, key_of("USER@XN--BCHER-KVA.EXAMPLE"));
}

TEST(Address, IdnUpperCaseUtf8DomainIsFolded) {
    // BÜCHER.example: the domain is case-insensitive in any script.
    EXPECT_EQ(key_of("user@B\xC3\x9C" "CHER.example"), "user@xn--bcher-kva.example");
}

TEST(Address, IdnDomainTarget) {
    const Normalised n = norm("@b\xC3\xBC" "cher.example");
    EXPECT_EQ(n.key, "@xn--bcher-kva.example");
    EXPECT_EQ(n.kind, TargetKind::domain);
}

TEST(Address, InvalidIdnRefused) {
    // An unpaired UTF-8 continuation byte is not a domain.
    expect_refused("user@\x80" "bad.example", "domain");
}

TEST(Address, TrailingDotDropped) {
    EXPECT_EQ(key_of("alice@example.com."), "alice@example.com");
    EXPECT_EQ(key_of("@example.com."), "@example.com");
}

TEST(Address, DomainTarget) {
    const Normalised n = norm("@Example.COM");
    EXPECT_EQ(n.key, "@example.com");
    EXPECT_EQ(n.kind, TargetKind::domain);
    expect_refused("@", "empty domain");
}

TEST(Address, BareNameWithoutDefaultDomainRefused) {
    expect_refused("alice", "default_domain");
}

TEST(Address, BareNameTakesDefaultDomain) {
    AddressRules rules;
    rules.default_domain = "Example.COM";
    EXPECT_EQ(key_of("Alice", rules), "alice@example.com");
    EXPECT_EQ(key_of("alice+tag", rules), "alice@example.com");
    // An explicit domain still wins.
    EXPECT_EQ(key_of("alice@other.example", rules), "alice@other.example");
}

// Issue 12, item 2: Exim's routers (local_part_suffix = +*) and Dovecot's
// recipient_delimiter resolve a quoted local part to its mailbox after
// unquoting, unescaping and dropping the tag; the key must be that mailbox.
TEST(Address, QuotedLocalPartResolvesLikeExim) {
    EXPECT_EQ(key_of("\"alice\"@example.com"), "alice@example.com");
    EXPECT_EQ(key_of("\"Bob+x y\"@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"bob+(x)\"@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"bob+x,y\"@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"bob+x\\\"y\"@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"bob+x@y\"@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"b\\ob\"@example.com"), "bob@example.com");     // quoted-pair
    EXPECT_EQ(key_of("\"bob\\+x\"@example.com"), "bob@example.com");   // escaped separator
    // What Exim passes as $local_part@$domain: already unquoted.
    EXPECT_EQ(key_of("bob+x y@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("bob+x\"y@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("bob+x@y@example.com"), "bob@example.com");
    // Only the base is a mailbox name: it must be one.
    expect_refused("\"alice smith\"@example.com", "space, control or special");
    expect_refused("\"alice smith+x\"@example.com", "space, control or special");
    expect_refused("\"\"@example.com", "empty local part");
    // Not one quoted-string: taken as written, and refused for its quote.
    expect_refused("\"bob\"x\"@example.com", "special character");
    expect_refused("\"bob\\\"@example.com", "special character");
}

TEST(Address, LongTagStillNamesItsMailbox) {
    // The limits apply to the key: a 300-octet tag must not make the address "no key".
    const std::string tag(300, 't');
    EXPECT_EQ(key_of("bob+" + tag + "@example.com"), "bob@example.com");
    EXPECT_EQ(key_of("\"bob+" + tag + " x\"@example.com"), "bob@example.com");
    expect_refused(std::string(65, 'a') + "+x@example.com", "local part is 65 octets");
    expect_refused(std::string(500, 'a') + "@example.com", "local part is 500 octets");
}

TEST(Address, SpacesAndControlsRefused) {
    expect_refused("alice smith@example.com", "local part");
    expect_refused(" alice@example.com", "local part");
    expect_refused(std::string_view("ali\x01" "ce@example.com", 17), "local part");
    expect_refused("alice\r\n@example.com", "local part");
    expect_refused(std::string_view("ali\0ce@example.com", 19), "local part");
    expect_refused("alice@exa mple.com", "domain");
    expect_refused("alice@example.com\n", "domain");
}

TEST(Address, Utf8LocalPartKeptButInvalidUtf8Refused) {
    // SMTPUTF8 local parts are kept as written (only ASCII is folded).
    EXPECT_EQ(key_of("M\xC3\xBCller@example.com"), "m\xC3\xBCller@example.com");
    // Bytes that are not UTF-8 would make a key no JSON output can carry.
    expect_refused("\xFF\xFE@example.com", "UTF-8");
    expect_refused("caf\xC3@example.com", "UTF-8");
    expect_refused("a\xC2\x85" "b@example.com", "local part");  // NEL
}

TEST(Address, SpecialsInLocalPartRefused) {
    expect_refused("a@b@example.com", "local part");
    expect_refused("a<b@example.com", "local part");
    expect_refused("a,b@example.com", "local part");
    expect_refused("@@example.com", "local part");
}

TEST(Address, LocalPartLimit) {
    const std::string l64(64, 'a');
    EXPECT_EQ(key_of(l64 + "@example.com"), l64 + "@example.com");
    expect_refused(std::string(65, 'a') + "@example.com", "local part is 65 octets");
}

TEST(Address, AddressLimit) {
    // 63 + 1 + 63 + 1 + 63 + 1 + 50 + 4 = 246-octet domain body; local part 4.
    const std::string label(63, 'd');
    std::string domain = label + "." + label + "." + label + ".";
    const std::string local = "abcd";
    // Fill up to exactly 254 octets in all, then one more.
    const std::size_t room = 254 - local.size() - 1 - domain.size() - 4;  // ".com"
    const std::string fits = local + "@" + domain + std::string(room, 'e') + ".com";
    ASSERT_EQ(fits.size(), 254u);
    EXPECT_EQ(key_of(fits), fits);
    const std::string too_long = local + "@" + domain + std::string(room + 1, 'e') + ".com";
    ASSERT_EQ(too_long.size(), 255u);
    expect_refused(too_long, "at most 254");
}

TEST(Address, IdnExpansionPastLimitRefused) {
    // The limit applies to the key (A-label form), not to the UTF-8 spelling:
    // these labels are 16 octets in UTF-8 but 26 as A-labels.
    const std::string label = "\xCF\x87\xE4\xB8\xB5" "dgf\xC3\xA8\xCE\xB6\xE4\xB8\x97";  // χ丵dgfèζ丗
    auto address = [&](int labels) {
        std::string a = "alice@";
        for (int i = 0; i < labels; ++i) a += label + std::to_string(i) + ".";
        return a + "example";
    };
    const Normalised five = norm(address(5));
    EXPECT_EQ(five.key.size(), 148u) << five.error;
    EXPECT_EQ(five.key.rfind("alice@xn--dgf0-", 0), 0u) << five.key;
    ASSERT_EQ(address(9).size(), 166u);
    expect_refused(address(9), "256 octets, at most 254");
}

TEST(Address, BadLabelsRefused) {
    expect_refused("alice@-example.com", "'-example'");
    expect_refused("alice@example-.com", "'example-'");
    expect_refused("alice@example..com", "empty label");
    expect_refused("alice@.example.com", "empty label");
    expect_refused("alice@exa$mple.com", "letter, digit or hyphen");
    expect_refused("alice@" + std::string(64, 'x') + ".com", "longer than 63");
    expect_refused("alice@", "empty domain");
    expect_refused("", "empty address");
}

TEST(Address, AddressLiteralKept) {
    EXPECT_EQ(key_of("alice@[192.0.2.1]"), "alice@[192.0.2.1]");
    expect_refused("alice@[192.0.2.1", "unterminated");
}

TEST(Address, SmallBufferRefused) {
    char buf[16];
    std::string error;
    EXPECT_EQ(normalise("a@example.com", {}, buf, sizeof buf, nullptr, &error), 0u);
    EXPECT_FALSE(error.empty());
}

TEST(Address, StringOverload) {
    std::string error;
    EXPECT_EQ(normalise("Bob+x@Example.org", AddressRules{}, error), "bob@example.org");
    EXPECT_EQ(normalise("bob", AddressRules{}, error), "");
    EXPECT_NE(error.find("no @domain"), std::string::npos) << error;
}

TEST(Address, DomainKeyOf) {
    EXPECT_EQ(domain_key_of("alice@example.com"), "@example.com");
    EXPECT_EQ(domain_key_of("@example.com"), "@example.com");
    EXPECT_EQ(domain_key_of("nodomain"), "");
}

// The checks' normalise_key gives normalise's key and its domain key, on
// each of the three paths: mask, one-pass (a tag), careful (quoted, a
// domain, an IDN), and nothing for what is no key.
TEST(Address, NormaliseKeyGivesTheKeyAndItsDomainKey) {
    AddressRules rules;
    char buf[kKeyBufferSize];
    const auto parts = [&](std::string_view in) {
        const KeyView k = normalise_key(in, rules, buf, sizeof buf);
        return std::string(k.key) + " " + std::string(k.domain);
    };
    EXPECT_EQ(parts("Bob@Example.COM"), "bob@example.com @example.com");
    EXPECT_EQ(parts("bob+news@example.com."), "bob@example.com @example.com");
    EXPECT_EQ(parts("\"Bob+x@y\"@example.com"), "bob@example.com @example.com");
    EXPECT_EQ(parts("@Example.com"), "@example.com @example.com");
    EXPECT_EQ(parts("bob@b\xc3\xbc" "cher.example"), "bob@xn--bcher-kva.example @xn--bcher-kva.example");
    EXPECT_EQ(parts("bob"), " ");
    EXPECT_EQ(parts("bob@exa mple.com"), " ");
}

// The regex queue runs select held mail with (Exim's -Rr, PCRE): it must
// match every address that normalises to the key, and nothing else.
TEST(Address, RegexMatchesEverySpellingOfTheKey) {
    const AddressRules rules;
    const std::string mailbox = address_regex("bob.smith@example.com", rules);
    EXPECT_EQ(mailbox, R"((?i)^("bob\.smith\+.*"|"?bob\.smith(\+[^@]*)?"?)@example\.com$)");
    EXPECT_EQ(address_regex("@example.com", rules), R"((?i)@example\.com$)");
    AddressRules keep_tags;
    keep_tags.subaddress_separator = "";
    EXPECT_EQ(address_regex("bob@example.com", keep_tags), R"((?i)^"?bob"?@example\.com$)");
    // std::regex (ECMAScript) has no (?i): strip it and match icase.
    const std::regex re(mailbox.substr(4), std::regex::icase);
    for (const char* yes : {"bob.smith@example.com", "Bob.Smith+news@Example.COM", "bob.smith+@example.com",
                            "\"bob.smith+x y\"@example.com", "\"Bob.Smith\"@example.com",
                            "\"bob.smith+x@y\"@example.com"})
        EXPECT_TRUE(std::regex_search(yes, re)) << yes;
    for (const char* no : {"bobxsmith@example.com", "bob.smith@example.com.evil", "xbob.smith@example.com",
                           "bob.smith@exampleXcom", "bob.smith+a@b@example.com"})
        EXPECT_FALSE(std::regex_search(no, re)) << no;
}

// The one-pass fast path and the careful path must agree on every address:
// found by fuzz_address ("Use+Tag@M.." became the key "use@m.", which
// normalised again to "use@m").
TEST(Address, EmptyLastLabelRefusedByBothPaths) {
    std::string error;
    AddressRules rules;
    for (const char* bad : {"Use+Tag@M..", "a@b..", "a@.", "a@b.-", "a@-b.", "a@b-..", "a@..b"}) {
        EXPECT_EQ(normalise(bad, rules, error), "") << bad;
        EXPECT_FALSE(error.empty()) << bad;
    }
    EXPECT_EQ(normalise("Use+Tag@M.", rules, error), "use@m") << error;
    EXPECT_EQ(normalise("a@B.c.", rules, error), "a@b.c") << error;
}

// normalise's one-pass path must give the careful path's key whenever it
// gives one (else the same mailbox has two keys, depending on spelling).
// Random addresses over octets that hit every branch of both: the '@', the
// separators, specials, quotes, non-ASCII, '-' and '.' at label edges, and
// lengths around the 64-octet base and 63-octet label limits.
TEST(Address, PlainPathAgreesWithCarefulPath) {
    const std::string octets = "aZ0_-.+@\"\\ =\xc3\xa9xY9";
    std::mt19937 rng(14);
    std::size_t plain_keys = 0;
    for (const char* separator : {"+", "", "-", "@", ".", "_", "="}) {
        AddressRules rules;
        rules.subaddress_separator = separator;
        for (int i = 0; i < 40000; ++i) {
            std::string in;
            const int parts = 1 + static_cast<int>(rng() % 4);
            for (int p = 0; p < parts; ++p) {
                // a run of one octet now and then: long bases and labels
                const char c = octets[rng() % octets.size()];
                const std::size_t run = rng() % 8 == 0 ? 60 + rng() % 8 : 1 + rng() % 5;
                in += rng() % 2 ? std::string(run, c) : std::string(1, c) + std::string(run - 1, 'k');
            }
            if (rng() % 2) in += "@Ex-a.mple.ORG";
            char plain[kKeyBufferSize], careful[kKeyBufferSize];
            const std::size_t n = detail::normalise_plain(in, rules, plain);
            const std::size_t m = detail::normalise_careful(in, rules, careful, sizeof careful, nullptr, nullptr);
            if (n == 0) continue;
            ++plain_keys;
            ASSERT_EQ(std::string_view(plain, n), std::string_view(careful, m))
                << "address '" << in << "', separator '" << separator << "'";
        }
    }
    EXPECT_GT(plain_keys, 20000u);  // the plain path did answer, often
}

// The mask path too, on what it is for (short addresses of letters, digits,
// '.', '-', '_') and next to it: every length up to and past 64, each octet
// of the set at every place (label edges, next to the '@', the 16-octet
// chunk edges), a second '@', a separator in the local part or the domain,
// upper case, and octets it must leave to the other paths.
TEST(Address, ShortPathAgreesWithCarefulPath) {
    const std::string octets = "aaaaZ09-._.-@+=\x7f\x80\xc3\xa9 \"";
    std::mt19937 rng(64);
    std::size_t short_keys = 0, plain_only = 0;
    for (const char* separator : {"+", "", "-", "@", ".", "_", "a"}) {
        AddressRules rules;
        rules.subaddress_separator = separator;
        for (int i = 0; i < 60000; ++i) {
            const std::size_t length = 1 + rng() % 70;
            std::string in(length, 'k');
            for (char& c : in)
                if (rng() % 5 == 0) c = octets[rng() % octets.size()];
            if (rng() % 2) in[rng() % length] = '@';  // most have one
            char fast[kKeyBufferSize], plain[kKeyBufferSize], careful[kKeyBufferSize];
            std::memset(fast, 'Q', sizeof fast);  // what is past the input must not count
            const std::size_t n = detail::normalise_short(in, rules, fast);
            const std::size_t p = detail::normalise_plain(in, rules, plain);
            const std::size_t m = detail::normalise_careful(in, rules, careful, sizeof careful, nullptr, nullptr);
            if (n == 0) {
                plain_only += p != 0;
                continue;
            }
            ++short_keys;
            ASSERT_EQ(std::string_view(fast, n), std::string_view(careful, m))
                << "address '" << in << "', separator '" << separator << "'";
            ASSERT_EQ(std::string_view(fast, n), std::string_view(plain, p)) << "address '" << in << "'";
        }
    }
#if defined(__SSE2__)
    EXPECT_GT(short_keys, 15000u);  // the mask path did answer, often
#endif
    EXPECT_GT(plain_only, 1000u);  // and left tags, trailing dots and the like to the others
}

TEST(Address, ShortPathTakesTheCommonAddressAndLeavesTheRest) {
    AddressRules rules;
    char out[kKeyBufferSize];
    const auto fast = [&](std::string_view in) {
        const std::size_t n = detail::normalise_short(in, rules, out);
        return std::string(out, n);
    };
#if defined(__SSE2__)
    EXPECT_EQ(fast("Bob.Smith_2@Mail-1.Example.ORG"), "bob.smith_2@mail-1.example.org");
    EXPECT_EQ(fast(std::string(40, 'a') + "@" + std::string(23, 'B')), std::string(40, 'a') + "@" + std::string(23, 'b'));
#endif
    for (const char* other : {"bob+tag@example.com", "bob@example.com.", "bob@-example.com", "bob@example-.com",
                              "bob@example..com", "@example.com", "bob@", "bob@a@b", "b\xc3\xa9@example.com",
                              "\"bob\"@example.com", "bob"})
        EXPECT_EQ(fast(other), "") << other;
    EXPECT_EQ(fast(std::string(40, 'a') + "@" + std::string(24, 'b')), "");  // 65 octets
}
