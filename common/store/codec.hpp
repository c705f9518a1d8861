// Record blobs: the one binary form of a TargetRecord, used in the store's
// arena and in the journal.  Decoding checks magic, length and CRC, so a
// corrupt file gives an error, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "model.hpp"

namespace mailsuspend {

// Appends the blob for r to out (8-byte aligned length), in the store's
// form (version 4, layout 3).
void encode_record(const TargetRecord& r, std::string& out);
// The same in the form every release since the fleet decodes (version 2, or
// 3 with a clock stamp or origin): what a fleet node publishes, so nodes
// still on an older release read it during a rolling upgrade.
void encode_portable_record(const TargetRecord& r, std::string& out);
// Decodes a blob of at most avail bytes at p; false with error_r when corrupt.
// only_service >= 0: that service's state (and the mode and seq) only, for a
// check that formats one reply; the key and everything else stay empty.
bool decode_record(const unsigned char* p, std::size_t avail, TargetRecord& r, std::string& error_r,
                   int only_service = -1);
// Length of the valid blob at p (0 when not a valid blob header).
std::size_t blob_length(const unsigned char* p, std::size_t avail);
// Suspended mask / earliest expiry as a slot caches them.
uint8_t suspended_mask(const TargetRecord& r);
uint32_t min_expiry(const TargetRecord& r);

}  // namespace mailsuspend
