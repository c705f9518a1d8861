// The readers' probe (ms_lookup_probe, common/reader/ms_read.c) walks the tag
// bytes eight at a time.  Here it is checked against the rule it implements,
// walked one tag at a time, on small tables built in memory: slot counts that
// are not multiples of eight (the last word holds bytes past the table),
// chains that wrap from the table's end to its start, keys sharing a tag
// (a slot read that is not the key), erased tags (the chain goes on), and a
// table without one empty tag.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ms_read.h"

namespace {

// A store file image of slot_count slots in memory (header, slots, tags
// padded to a cache line, arena), mapped the way readers map the file
// (ms_map_of).
struct Table {
    static constexpr uint64_t kArena = 64 * 1024;
    std::vector<uint64_t> words;  // the image, 8-byte aligned as a mapping is
    ms_map map{};
    uint64_t arena_used = 8;

    Table(uint64_t slot_count, uint8_t padding) {
        const uint64_t tags_offset = MS_HEADER_SIZE + slot_count * sizeof(ms_slot);
        const uint64_t arena_offset = tags_offset + ms_tags_size(slot_count);
        words.assign((arena_offset + kArena) / 8, 0);
        auto* h = reinterpret_cast<ms_store_header*>(words.data());
        h->magic = MS_STORE_MAGIC;
        h->layout_version = MS_LAYOUT_VERSION;
        h->header_size = MS_HEADER_SIZE;
        h->slot_count = slot_count;
        h->slots_offset = MS_HEADER_SIZE;
        h->tags_offset = tags_offset;
        h->arena_offset = arena_offset;
        h->arena_size = kArena;
        h->file_size = arena_offset + kArena;
        ms_map_of(words.data(), &map);  // domain_filter all zero: only mailbox keys are probed here
        // The bytes past the table are no tags: neither an empty one (a chain
        // goes on at slot 0) nor one that matches (no slot past the table).
        std::memset(tags() + slot_count, padding, ms_tags_size(slot_count) - slot_count);
    }
    uint64_t size() const { return map.slot_count; }
    uint8_t* tags() { return const_cast<uint8_t*>(map.tags); }
    ms_slot& slot(uint64_t i) { return const_cast<ms_slot&>(map.slots[i]); }
    unsigned char* arena() { return const_cast<unsigned char*>(map.arena); }

    // The record of key in slot i, its blob appended to the arena.
    void put(uint64_t i, const std::string& key, uint64_t fp) {
        const uint64_t offset = arena_used, length = MS_BLOB_KEY_OFFSET + key.size() + 8;
        arena()[offset + sizeof(ms_blob_header)] = static_cast<unsigned char>(key.size());
        std::memcpy(arena() + offset + MS_BLOB_KEY_OFFSET, key.data(), key.size());
        arena_used += (length + 7) / 8 * 8;
        slot(i).word0 = ms_make_w0(2, MS_SLOT_USED, static_cast<uint8_t>(key.size()), 0, 1);
        slot(i).fingerprint = fp;
        slot(i).blob = (offset << 32) | length;
        tags()[i] = ms_tag_of(fp);
    }
};

// The rule, one tag at a time: from the home slot, wrapping, until the first
// empty tag (or every tag once); a slot is read only where the tag is key's.
ms_probe reference(Table& t, const std::string& key, uint64_t fp, uint64_t& index_r) {
    const uint64_t n = t.size();
    uint64_t i = ms_slot_index(fp, n);
    for (uint64_t seen = 0; seen < n; ++seen, i = (i + 1) % n) {
        const uint8_t tag = t.tags()[i];
        if (tag == MS_TAG_EMPTY) return MS_PROBE_ABSENT;
        if (tag != ms_tag_of(fp)) continue;
        const ms_slot& s = t.slot(i);
        const std::size_t off = s.blob >> 32;
        if (s.fingerprint == fp && ms_w0_key_len(s.word0) == key.size() &&
            std::memcmp(t.arena() + off + MS_BLOB_KEY_OFFSET, key.data(), key.size()) == 0) {
            index_r = i;
            return MS_PROBE_FOUND;
        }
    }
    return MS_PROBE_ABSENT;
}

// A fingerprint whose home slot is home in a table of n, with a chosen tag
// byte source (bits 0-15) so keys can be made to share a tag.
uint64_t fingerprint_at(uint64_t home, uint64_t n, uint16_t tag_bits, std::mt19937_64& rng) {
    const unsigned __int128 span = (static_cast<unsigned __int128>(1) << 64) / n;
    const uint64_t fp = static_cast<uint64_t>(home * span + rng() % span);
    return (fp & ~uint64_t{0xFFFF}) | tag_bits;
}

TEST(Probe, WordWalkAgreesWithTheOneTagRule) {
    std::mt19937_64 rng(14);
    uint64_t found = 0, absent = 0, wrapped = 0;
    for (const uint64_t n : {1, 3, 8, 13, 16, 21, 64, 67}) {
        for (int round = 0; round < 300; ++round) {
            // Padding zero (as in a fresh file) or a tag the keys use.
            Table t(n, round % 2 ? MS_TAG_EMPTY : ms_tag_of(rng() % 6));
            std::vector<std::pair<std::string, uint64_t>> keys;
            const uint64_t used = rng() % (n + 1);  // up to a table with no empty tag
            for (uint64_t k = 0; k < n; ++k) {
                // Homes bunched near the table's end, so chains wrap.
                const uint64_t home = rng() % 2 ? n - 1 - rng() % std::min<uint64_t>(n, 3) : rng() % n;
                const uint64_t fp = fingerprint_at(home, n, static_cast<uint16_t>(rng() % 6), rng);
                keys.emplace_back("k" + std::to_string(k) + "@d.example", fp);
            }
            // Linear probing placement of the first `used` keys; some erased.
            for (uint64_t k = 0; k < used; ++k) {
                uint64_t i = ms_slot_index(keys[k].second, n);
                while (t.tags()[i] != MS_TAG_EMPTY) i = (i + 1) % n;
                t.put(i, keys[k].first, keys[k].second);
                if (i < ms_slot_index(keys[k].second, n)) ++wrapped;
                if (rng() % 7 == 0) t.tags()[i] = MS_TAG_FREE;
            }
            // Damaged tags (a cleared one cuts a chain short: readers then miss
            // the records behind it until a writer repairs the tags).
            for (uint64_t k = 0; k < n / 5; ++k) t.tags()[rng() % n] = MS_TAG_EMPTY;
            ASSERT_EQ(ms_header_check(reinterpret_cast<const ms_store_header*>(t.words.data()),
                                      t.words.size() * 8, false), MS_HEADER_OK);
            const ms_map& m = t.map;
            for (const auto& [key, fp] : keys) {
                uint64_t want_index = ~uint64_t{0}, got_index = ~uint64_t{0};
                ms_slot_copy copy{};
                const ms_probe want = reference(t, key, fp, want_index);
                const ms_probe got = ms_lookup_probe(&m, key.data(), key.size(), fp, &got_index, &copy);
                ASSERT_EQ(got, want) << "n=" << n << " round=" << round << " key=" << key;
                if (want == MS_PROBE_FOUND) {
                    ASSERT_EQ(got_index, want_index);
                    ASSERT_EQ(copy.fingerprint, fp);
                    ++found;
                } else {
                    ++absent;
                }
            }
        }
    }
    // Both outcomes and wrapped chains came up, or the test proved little.
    EXPECT_GT(found, 1000u);
    EXPECT_GT(absent, 1000u);
    EXPECT_GT(wrapped, 100u);
}

}  // namespace
