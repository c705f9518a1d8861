// The audit log: one JSON object per line, appended with O_APPEND so
// concurrent writers (CLI, Exim's automatic suspensions) never interleave
// within a line, and synced before the command says "ok".
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>

#include "operations.hpp"

namespace mailsuspend {

std::string append_audit(const std::string& path, const std::vector<nlohmann::json>& lines) {
    if (path.empty() || lines.empty()) return {};
    std::string text;
    for (const auto& line : lines) text += line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return path + ": " + std::strerror(errno);
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                    ::fdatasync(fd) == 0;
    const std::string error = ok ? "" : path + ": " + std::strerror(errno);
    ::close(fd);
    return error;
}

}  // namespace mailsuspend
