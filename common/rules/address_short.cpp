// normalise's first path: the commonest address of all, "name@example.com"
// in letters, digits, '.', '-' and '_', at most 64 octets, sixteen octets
// at a time (SSE2, in every x86-64).  Each octet is classified once into a
// bit of a few masks, and the rules the one-pass path checks octet by octet
// (one '@', no tag, labels neither empty nor starting or ending with '-')
// become a handful of operations on those masks.  Anything else is 0: the
// one-pass path (normalise_plain) and the careful path take it, as they
// take everything on a machine without SSE2.  The same key as both, always
// (unit test and fuzzer).
#include "address.hpp"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mailsuspend::detail {

#if defined(__SSE2__)
namespace {

// Octets of an address as bits: bit i stands for octet i.
struct OctetMasks {
    uint64_t other = 0;  // not a letter, digit, '.', '-' or '_', or the separator
    uint64_t at = 0;
    uint64_t dot = 0;
    uint64_t dot_or_dash = 0;
};

__m128i between(__m128i x, char low, char high) {
    // Shifted so that low..high become the lowest signed octets, -128 up:
    // one add and one compare (the add wraps: every other octet lands above).
    const __m128i shifted = _mm_add_epi8(x, _mm_set1_epi8(static_cast<char>(0x80 - low)));
    return _mm_cmplt_epi8(shifted, _mm_set1_epi8(static_cast<char>(-128 + (high - low + 1))));
}

__m128i equal(__m128i x, char c) { return _mm_cmpeq_epi8(x, _mm_set1_epi8(c)); }

uint64_t bits(__m128i m, unsigned shift) {
    return uint64_t{static_cast<unsigned>(_mm_movemask_epi8(m))} << shift;  // 16 bits
}

// Classifies the sixteen octets at chunk (octets shift.. of the address)
// into masks, and lower-cases their letters in place.  The separator counts
// as another octet: an address with a tag (or a separator that is a letter,
// '.', '-' or '_') is the one-pass path's.
void classify(char* chunk, unsigned shift, char separator, OctetMasks& m) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(chunk));
    const __m128i case_bit = _mm_set1_epi8(0x20);
    const __m128i letter = between(_mm_or_si128(x, case_bit), 'a', 'z');
    const __m128i dot = equal(x, '.');
    const __m128i dot_or_dash = _mm_or_si128(dot, equal(x, '-'));
    const __m128i plain = _mm_or_si128(_mm_or_si128(letter, between(x, '0', '9')),
                                       _mm_or_si128(dot_or_dash, equal(x, '_')));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(chunk), _mm_or_si128(x, _mm_and_si128(letter, case_bit)));
    m.other |= bits(_mm_or_si128(_mm_andnot_si128(plain, _mm_cmpeq_epi8(x, x)), equal(x, separator)), shift);
    m.at |= bits(equal(x, '@'), shift);
    m.dot |= bits(dot, shift);
    m.dot_or_dash |= bits(dot_or_dash, shift);
}

}  // namespace

std::size_t normalise_short(std::string_view in, const AddressRules& rules, char* out, std::size_t* at_r) {
    const std::size_t n = in.size();
    if (n < 3 || n > 64) return 0;
    // In place in out (room for 320 octets): a load past the end of in
    // could fault, and sanitizers would call it a bug.  The octets past n
    // are classified too, and masked off.
    std::memcpy(out, in.data(), n);
    const char separator = rules.subaddress_separator.empty() ? '@' : rules.subaddress_separator.front();
    OctetMasks m;
    for (unsigned i = 0; i < n; i += 16) classify(out + i, i, separator, m);
    const uint64_t all = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
    const uint64_t at = m.at & all;
    // Exactly one '@', neither first nor last, and nothing else but plain octets.
    if (at == 0 || (at & (at - 1)) != 0 || (at & 1) || (at >> (n - 1)) || (m.other & all & ~at)) return 0;
    // The domain's labels are a hostname's: none empty (a dot first, last or
    // after a dot; a trailing dot, dropped there, is one here), none that
    // starts or ends with '-'.  The domain, under 64 octets, bounds each label.
    const uint64_t domain = all & ~((at << 1) - 1), dot = m.dot & domain;
    const uint64_t edges = (at << 1) | (uint64_t{1} << (n - 1)) | (dot << 1) | (dot >> 1);
    if (m.dot_or_dash & domain & edges) return 0;
    if (at_r) *at_r = static_cast<std::size_t>(__builtin_ctzll(at));
    return n;
}

#else

std::size_t normalise_short(std::string_view, const AddressRules&, char*, std::size_t*) { return 0; }

#endif

}  // namespace mailsuspend::detail
