// Small files read and written whole with open/read/write: no iostreams.
// A stream would link libstdc++'s locale machinery into every host module
// that reaches it (the Exim module links its C++ runtime in; each of its
// imports is looked up when a fresh Exim process loads it).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailsuspend {

struct ReadOptions {
    std::size_t limit = 1 << 20;  // larger files are refused (errno EFBIG)
    bool follow_links = true;     // false: a symbolic link is refused (ELOOP)
    struct stat* stat_r = nullptr;  // where to put the file's fstat, if wanted
};

// The whole of the regular file at path into out; false with errno set when
// it cannot be opened, is no regular file, exceeds the limit or a read fails.
bool read_small_file(const std::string& path, std::string& out, const ReadOptions& options = {});

// The same into memory nobody zeroes first and nothing copies: what a fresh
// mail process reads its config with (glibc zeroes and copies a few KB with
// `rep stosb` and `rep movsb`: under valgrind an instruction per octet).
struct FileBytes {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
    std::string_view view() const { return {data.get(), size}; }
};
bool read_small_file(const std::string& path, FileBytes& out, const ReadOptions& options = {});

// Writes text to path (created with mode & ~umask, or truncated); false
// with errno set when it cannot be opened or written whole.
bool write_small_file(const std::string& path, std::string_view text, mode_t mode = 0666);

// Replaces path with text, whole or not at all: text goes to a temporary
// file beside it (".<name>.XXXXXX": directory scans that skip dot names do
// not see it), which gets mode whatever the umask and is renamed over path.
// false with errno set; the temporary file is removed.  No fsync: a crash
// may leave the old file, never a part of the new one.  group, unless -1,
// is given to the new file before it has any content.
bool replace_small_file(const std::string& path, std::string_view text, mode_t mode,
                        gid_t group = static_cast<gid_t>(-1));

// text's lines without their "\n" (a last line without one counts too).
std::vector<std::string_view> lines_of(std::string_view text);

// text split at runs of blanks (space, tab, CR, LF, VT, FF), as a shell
// splits words without quoting.
std::vector<std::string> blank_separated_words(std::string_view text);

}  // namespace mailsuspend
