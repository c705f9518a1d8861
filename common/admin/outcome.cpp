#include "outcome.hpp"

#include "address.hpp"
#include "config.hpp"
#include "text.hpp"

namespace mailsuspend {

Outcome normalise_target(const Config& cfg, std::string_view text, std::string& key) {
    std::string why;
    key = normalise(text, cfg.address, why);
    if (key.empty()) return {Exit::bad_input, "invalid target '" + escape_for_display(text, 80) + "': " + why};
    return {};
}

}  // namespace mailsuspend
