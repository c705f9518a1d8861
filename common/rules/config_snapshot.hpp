// The parsed config kept for fresh mail processes (docs/design.md, "The
// config snapshot").  Parsing the shipped mailsuspend.conf costs a fresh Exim
// process about 750 k instructions, more than the rest of its check; the CLI
// (root, every minute through mailsuspend-sweep.timer and on every command)
// leaves the parse in <snapshot dir>/config-<hash of the path>, and a mail
// process uses it when the file reads the same, byte for byte.  Anything else
// (no snapshot, another text, another host name, a damaged or foreign file)
// and the process parses the file as before: the snapshot can make a process
// faster, never make it read another config.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config.hpp"

namespace mailsuspend {

// Regenerable, so under /var/cache (FHS): the package removes it on purge.
#define MAILSUSPEND_SNAPSHOT_DIR "/var/cache/mailsuspend"

// What a mail process reads: the snapshot of path when it is current, else
// load_config(path).  error_r as load_config's.
std::optional<Config> load_config_snapshot(const std::string& path, const std::string& snapshot_dir,
                                           std::string& error_r);

// The snapshot's values alone: nullopt unless it is current for path.
std::optional<Config> read_config_snapshot(const std::string& path, const std::string& snapshot_dir);

enum class SnapshotState { current, written, not_kept };

// What the CLI does after it has read the config (parsed: what load_config
// gave, null when the file does not parse): writes the snapshot of path
// unless the one there holds what parsed holds.  not_kept, with why, when the text
// cannot have one (an @include, whose files the snapshot cannot vouch for; a
// file that does not parse) or the snapshot cannot be written (not the
// file's owner, no permission): a mail process then parses the file.
SnapshotState keep_config_snapshot(const std::string& path, const std::string& snapshot_dir, const Config* parsed,
                                   std::string& why_r);

// Where path's snapshot is.
std::string config_snapshot_path(const std::string& path, const std::string& snapshot_dir);

namespace detail {
// A snapshot of c as made of text at path, for the tests: one an older
// version would have written, whose values differ from this parse.
std::string encode_config_snapshot(const std::string& path, std::string_view text, const Config& c);
}  // namespace detail

}  // namespace mailsuspend
