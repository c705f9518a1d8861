// Small state files the CLI's agents keep next to the store (the fleet
// position, the notify position).
#pragma once

#include <string>

namespace mailsuspend::cli {

// Replaces dir/name by text through a temporary file, fdatasync, rename and
// an fsync of dir: after a crash the file holds the old text or the new one.
// false with the error in error_r.
bool replace_file_durably(const std::string& dir, const std::string& name, const std::string& text,
                          std::string& error_r);

}  // namespace mailsuspend::cli
