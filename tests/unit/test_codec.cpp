// Record blobs (codec.cpp): every record survives a round trip in the
// store's form and in the portable one, the typical record fits a cache
// line, version-1 blobs of older stores still decode, and no damaged blob
// decodes or crashes.
#include <gtest/gtest.h>

#include <boost/crc.hpp>

#include <cstring>
#include <random>
#include <string>

#include "codec.hpp"
#include "store_layout.hpp"

namespace mailsuspend {
namespace {

const unsigned char* bytes(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

TargetRecord decoded(const std::string& blob) {
    TargetRecord r;
    std::string why;
    EXPECT_TRUE(decode_record(bytes(blob), blob.size(), r, why)) << why;
    return r;
}

// The data set of bench/store_bench: imap and pop3 suspended together.
TargetRecord typical() {
    TargetRecord r;
    r.key = "u123456@d1234.example";
    r.seq = 1234567;
    for (Service s : {Service::imap, Service::pop3}) {
        ServiceState& st = r.at(s);
        st.suspended = true;
        st.since = 1795432998;
        st.reason = "unpaid invoice";
    }
    return r;
}

TargetRecord random_record(std::mt19937_64& rng) {
    auto pick = [&](uint64_t n) { return rng() % n; };
    auto text = [&](std::size_t max) {
        std::string t(pick(max + 1), 'x');
        for (char& c : t) c = static_cast<char>(' ' + pick(95));
        return t;
    };
    TargetRecord r;
    r.key = pick(2) ? "@d" + std::to_string(pick(1000)) + ".example" : "u" + std::to_string(rng()) + "@x.example";
    r.mode = static_cast<DeliveryMode>(pick(5));
    r.seq = pick(2) ? pick(300) : rng();
    if (pick(3) == 0) r.last_self_unblock = static_cast<int64_t>(pick(UINT32_MAX));
    for (int n = static_cast<int>(pick(4)); n > 0; --n)
        r.auto_suspensions.push_back(static_cast<int64_t>(pick(UINT32_MAX)));
    const std::string shared_reason = text(200);
    for (auto& st : r.services) {
        if (pick(2)) continue;
        st.suspended = pick(4) != 0;
        st.locked = pick(2);
        st.fail_queued = pick(2);
        st.hold = pick(2);
        st.since = static_cast<int64_t>(pick(UINT32_MAX));
        st.expires = pick(2) ? 0 : static_cast<int64_t>(1 + pick(UINT32_MAX - 1));
        st.source = static_cast<Source>(pick(4));
        const bool shared = pick(2);
        st.reason = shared ? shared_reason : text(200);
    }
    return r;
}

// The blob and journal CRC is part of the on-disk format: slicing-by-8 must
// give what a plain CRC-32 (Boost's, which wrote every store so far) gives,
// for every length and alignment.
void reseal(std::string& blob) {
    layout::BlobHeader h;
    std::memcpy(&h, blob.data(), sizeof h);
    h.crc = layout::crc32(blob.data() + sizeof h, blob.size() - sizeof h);
    std::memcpy(blob.data(), &h, sizeof h);
}

TEST(Codec, Crc32IsTheStandardCrc32) {
    EXPECT_EQ(layout::crc32("123456789", 9), 0xCBF43926u);
    EXPECT_EQ(layout::crc32("", 0), 0u);
    std::mt19937 rng(7);
    std::string bytes(600, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    for (std::size_t start = 0; start < 9; ++start)
        for (std::size_t len = 0; start + len <= bytes.size(); len += 1 + len / 7) {
            boost::crc_32_type plain;
            plain.process_bytes(bytes.data() + start, len);
            ASSERT_EQ(layout::crc32(bytes.data() + start, len), plain.checksum()) << start << "+" << len;
        }
}

TEST(Codec, EveryRecordSurvivesARoundTripInBothForms) {
    std::mt19937_64 rng(20261201);
    for (int i = 0; i < 20000; ++i) {
        const TargetRecord r = random_record(rng);
        for (auto encode : {encode_record, encode_portable_record}) {
            std::string blob;
            encode(r, blob);
            ASSERT_EQ(blob.size() % 8, 0u);
            ASSERT_EQ(blob_length(bytes(blob), blob.size()), blob.size());
            ASSERT_EQ(decoded(blob), r) << "record " << i;
        }
    }
}

// The store's form (version 4) fits the typical record in one cache line,
// where the writer places it (test_store_layout3.cpp).
TEST(Codec, TheTypicalRecordIs64BytesAndSharesItsReason) {
    std::string blob;
    encode_record(typical(), blob);
    EXPECT_EQ(blob.size(), 64u);  // 72 in version 2: the actor byte, pop3's since and source
    // The reason is written once although two services carry it.
    EXPECT_EQ(blob.find("unpaid invoice"), blob.rfind("unpaid invoice"));
    EXPECT_EQ(decoded(blob), typical());
}

// Services that share a reason but not their times or source: each keeps its
// own, in version 4 as in version 2.
TEST(Codec, EntriesSharingOnlyTheReasonKeepTheirOwnTimes) {
    TargetRecord r = typical();
    r.at(Service::pop3).since += 60;
    r.at(Service::imap).expires = 1795439998;
    r.at(Service::send).suspended = true;
    r.at(Service::send).since = r.at(Service::imap).since;
    r.at(Service::send).expires = 1795449998;
    r.at(Service::send).source = Source::rate;
    r.at(Service::send).reason = "unpaid invoice";
    for (auto encode : {encode_record, encode_portable_record}) {
        std::string blob;
        encode(r, blob);
        EXPECT_EQ(decoded(blob), r);
    }
}

// kSameTexts | kHasExpiry: in version 4 "as the entry before", which the
// first entry cannot be.
TEST(Codec, AVersion4FirstEntryThatRepeatsTheOneBeforeIsRefused) {
    TargetRecord r;
    r.key = "a@example.com";
    r.at(Service::imap).suspended = true;
    r.at(Service::imap).reason = "x";
    std::string blob;
    encode_record(r, blob);
    const std::size_t head = sizeof(layout::BlobHeader) + 1 + r.key.size() + 3;  // mode, extras, seq 0
    ASSERT_EQ(static_cast<uint8_t>(blob[head]) & 0x07, 0) << "imap's entry";
    blob[head] = static_cast<char>(static_cast<uint8_t>(blob[head]) | 0xC0);
    reseal(blob);
    TargetRecord out;
    std::string why;
    EXPECT_FALSE(decode_record(bytes(blob), blob.size(), out, why));
}

TEST(Codec, KeySitsWhereTheStoreLayoutLooksForIt) {
    std::string blob;
    encode_record(typical(), blob);
    EXPECT_EQ(static_cast<uint8_t>(blob[sizeof(layout::BlobHeader)]), typical().key.size());
    EXPECT_EQ(blob.compare(layout::kBlobKeyOffset, typical().key.size(), typical().key), 0);
}

// A version-1 blob as the first release wrote it (fixed-width fields, every
// service with its own reason and actor).
std::string v1_blob(const TargetRecord& r) {
    std::string out(sizeof(layout::BlobHeader), '\0');
    auto put = [&](const auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
    put(static_cast<uint8_t>(r.key.size()));
    out += r.key;
    put(static_cast<uint8_t>(r.mode));
    put(static_cast<uint32_t>(r.last_self_unblock));
    put(r.seq);
    put(static_cast<uint16_t>(r.auto_suspensions.size()));
    for (int64_t t : r.auto_suspensions) put(static_cast<uint32_t>(t));
    for (int i = 0; i < kServiceCount; ++i) {
        const ServiceState& s = r.services[i];
        if (s == ServiceState{}) continue;
        put(static_cast<uint8_t>(i));
        put(static_cast<uint8_t>((s.suspended ? 1 : 0) | (s.locked ? 2 : 0) | (s.fail_queued ? 4 : 0)));
        put(static_cast<uint32_t>(s.since));
        put(static_cast<uint32_t>(s.expires));
        put(static_cast<uint8_t>(s.source));
        put(static_cast<uint16_t>(s.reason.size()));
        out += s.reason;
        const std::string actor = "panel";  // version 1 stored one; it is dropped
        put(static_cast<uint16_t>(actor.size()));
        out += actor;
    }
    put(uint8_t{0xFF});
    out.append((8 - out.size() % 8) % 8, '\0');
    layout::BlobHeader h{layout::kBlobMagic, 1, static_cast<uint32_t>(out.size()), 0};
    h.crc = layout::crc32(out.data() + sizeof h, out.size() - sizeof h);
    std::memcpy(out.data(), &h, sizeof h);
    return out;
}

TEST(Codec, VersionOneBlobsOfOlderStoresStillDecode) {
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
        TargetRecord r = random_record(rng);
        for (auto& s : r.services) s.hold = false;  // version 1 had no hold
        ASSERT_EQ(decoded(v1_blob(r)), r) << "record " << i;
    }
}

// Re-seals a damaged body so the CRC passes and the parser itself is tested.
TEST(Codec, DamagedBlobsAreRefusedNeverMisread) {
    std::mt19937_64 rng(99);
    std::string blob;
    encode_record(typical(), blob);
    TargetRecord r;
    std::string why;
    for (std::size_t n = 0; n < blob.size(); ++n)
        EXPECT_FALSE(decode_record(bytes(blob), n, r, why)) << "cut to " << n;
    std::string flipped = blob;
    flipped[20] ^= 0x10;
    EXPECT_FALSE(decode_record(bytes(flipped), flipped.size(), r, why));
    EXPECT_NE(why.find("checksum"), std::string::npos) << why;
    // Random bodies with a valid seal: refused or decoded, never a crash,
    // and whatever decodes encodes again to something that decodes equal.
    for (int i = 0; i < 20000; ++i) {
        std::string b = blob;
        for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k)
            b[sizeof(layout::BlobHeader) + rng() % (b.size() - sizeof(layout::BlobHeader))] =
                static_cast<char>(rng());
        reseal(b);
        if (!decode_record(bytes(b), b.size(), r, why)) continue;
        std::string again;
        encode_record(r, again);
        EXPECT_EQ(decoded(again), r);
    }
}

uint16_t blob_version(const std::string& blob) {
    layout::BlobHeader h;
    std::memcpy(&h, blob.data(), sizeof h);
    return h.version;
}

// A fleet record (issue 15) carries its clock stamp and origin: version 3
// in the portable form a node publishes.
TEST(Codec, FleetRecordsRoundTripAsVersion3) {
    std::mt19937_64 rng(15);
    for (int i = 0; i < 5000; ++i) {
        TargetRecord r = random_record(rng);
        r.hlc = rng() >> (rng() % 64);
        r.origin = i % 7 == 0 ? "" : "node-" + std::to_string(rng() % 1000);
        if (r.hlc == 0 && r.origin.empty()) r.hlc = 1;
        std::string blob, stored;
        encode_portable_record(r, blob);
        ASSERT_EQ(blob_version(blob), 3u);
        ASSERT_EQ(decoded(blob), r) << "record " << i;
        encode_record(r, stored);
        ASSERT_EQ(blob_version(stored), 4u);
        ASSERT_EQ(decoded(stored), r) << "record " << i;
    }
}

// The portable form of a record without a stamp is version 2, byte for
// byte what releases before layout 3 wrote, which every release decodes.
TEST(Codec, PortableRecordsWithoutAStampAreVersion2) {
    std::string blob;
    encode_portable_record(typical(), blob);
    EXPECT_EQ(blob_version(blob), 2u);
    EXPECT_EQ(blob.size(), 72u);
    EXPECT_EQ(blob.substr(sizeof(layout::BlobHeader)),
              std::string("\x15u123456@d1234.example\0\0\x87\xad\x4b"  // key, mode, extras, seq
                          "\x08\x26\x22\x04\x6b\0\x0eunpaid invoice\0"   // imap: head, since, source, texts
                          "\x89\x26\x22\x04\x6b\0\xff\0\0\0\0",         // pop3 (same texts), end, padding
                          60));
    TargetRecord stamped = typical();
    stamped.hlc = uint64_t{1795432998123} << kHlcCounterBits;
    stamped.origin = "mx-1";
    std::string fleet_blob;
    encode_portable_record(stamped, fleet_blob);
    EXPECT_EQ(decoded(fleet_blob).origin, "mx-1");
    EXPECT_EQ(decoded(fleet_blob).hlc, stamped.hlc);
}

// The fleet fields are a version-3 extra: a version-2 blob claiming them is damaged.
TEST(Codec, AVersion2BlobWithFleetFieldsIsRefused) {
    TargetRecord stamped = typical();
    stamped.hlc = 5;
    stamped.origin = "a";
    std::string blob;
    encode_portable_record(stamped, blob);
    layout::BlobHeader h;
    std::memcpy(&h, blob.data(), sizeof h);
    h.version = 2;
    std::memcpy(blob.data(), &h, sizeof h);
    TargetRecord r;
    std::string why;
    EXPECT_FALSE(decode_record(bytes(blob), blob.size(), r, why));
}

}  // namespace
}  // namespace mailsuspend
