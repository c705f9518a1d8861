// Self-validating record images for the stress tests.
//
// Every record a stress writer stores is a pure function of (key, version):
// which services are suspended, their reasons, expiries, flags and the
// delivery mode all derive from the pair.  A reader can therefore tell from
// any record it reads which version it is and whether every field belongs to
// that one version: a torn read (fields of two versions, or of two keys)
// decodes as an error.  Versions of a group count 1, 2, 3, ...; every eighth
// version is an erase (the empty record), so erasing and re-inserting is
// exercised too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "model.hpp"
#include "store.hpp"

namespace stress {

using mailsuspend::HotView;
using mailsuspend::TargetRecord;

// Expiries sit far in the future and encode the version: service i of
// version v expires at kExpiryBase + 8 v + i.  HotView::min_expiry is 32-bit.
constexpr uint32_t kExpiryBase = 3'000'000'000u;
constexpr uint32_t kMaxVersion = (0xFFFFFFFFu - kExpiryBase) / 8 - 1;

// Version v > 0 of a group erases its keys.
inline bool is_erase(uint32_t version) { return version != 0 && version % 8 == 0; }

uint32_t key_hash(std::string_view key);
uint8_t suspended_mask(std::string_view key, uint32_t version);
mailsuspend::DeliveryMode mode_of(std::string_view key, uint32_t version);

// The image of key at version (the empty record when is_erase(version)).
TargetRecord make_image(const std::string& key, uint32_t version);

// Which version rec is; false with why when rec is not exactly some
// version's image of key (seq is the store's and is not compared).
bool decode_record(const TargetRecord& rec, std::string_view key, uint32_t& version,
                   std::string& why);
// The same for the hot view a lookup returns.
bool decode_hot(const HotView& view, std::string_view key, uint32_t& version, std::string& why);

// The stress key set: index -> normalised key; every tenth is a domain.
std::string stress_key(uint32_t index);

}  // namespace stress
