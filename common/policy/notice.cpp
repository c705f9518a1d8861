#include "notice.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>

#include "config.hpp"
#include "files.hpp"
#include "spawn.hpp"
#include "text.hpp"
#include "token.hpp"

namespace mailsuspend {
namespace {

constexpr const char* kPending = "notice-pending";
constexpr const char* kSamplePrefix = "sample-";

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }


std::string random_hex(std::size_t bytes) {
    unsigned char raw[32];
    bytes = std::min(bytes, sizeof raw);
    if (sodium_init() >= 0) randombytes_buf(raw, bytes);
    else  // no random source: time and pid, still unique enough
        for (std::size_t i = 0; i < bytes; ++i)
            raw[i] = static_cast<unsigned char>((std::time(nullptr) >> (i % 8)) ^ (::getpid() >> (i % 4)) ^ (i * 37));
    static const char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < bytes; ++i) {
        out += hex[raw[i] >> 4];
        out += hex[raw[i] & 15];
    }
    return out;
}

// Evidence samples and notice claims; larger is no file of ours.
bool read_whole(const std::string& path, std::string& out) {
    return read_small_file(path, out, {.limit = 64 << 20});
}

// Writes text to dir/name whole or not at all; 0660 whatever the umask: root's
// CLI and Exim share these files.
bool write_atomically(const std::string& dir, const std::string& name, std::string_view text, std::string& error_r) {
    if (replace_small_file(dir + "/" + name, text, 0660)) return true;
    return error_r = errno_text(dir + "/" + name), false;
}


std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return names;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

// ---- evidence -------------------------------------------------------------

std::string evidence_root(const Config& cfg) { return cfg.store_path + "/evidence"; }

std::string evidence_dir(const Config& cfg, std::string_view key) {
    static const char hex[] = "0123456789ABCDEF";
    std::string name;
    for (char c : key) {
        const auto u = static_cast<unsigned char>(c);
        const bool safe = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                          std::strchr("@._+-=", c) != nullptr;
        if (safe && u != 0) {
            name += c;
        } else {
            name += '%';
            name += hex[u >> 4];
            name += hex[u & 15];
        }
    }
    return evidence_root(cfg) + "/" + name;
}

bool create_evidence_root(const Config& cfg, std::string& error_r) {
    const std::string root = evidence_root(cfg);
    if (::mkdir(root.c_str(), 02770) != 0 && errno != EEXIST) return error_r = errno_text(root), false;
    const int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return error_r = errno_text(root), false;
    bool ok = true;
    if (!cfg.write_group.empty()) {
        const struct group* gr = ::getgrnam(cfg.write_group.c_str());
        if (!gr) error_r = root + ": group '" + cfg.write_group + "' does not exist", ok = false;
        else if (::fchown(fd, static_cast<uid_t>(-1), gr->gr_gid) != 0) error_r = errno_text(root), ok = false;
    }
    // setgid: samples Exim writes stay in the group; no access for others (private mail).
    if (ok && ::fchmod(fd, 02770) != 0) error_r = errno_text(root), ok = false;
    ::close(fd);
    return ok;
}

bool ensure_evidence_dir(const Config& cfg, std::string_view key, std::string& dir, std::string& error_r) {
    const std::string root = evidence_root(cfg);
    if (::access(root.c_str(), F_OK) != 0 && !create_evidence_root(cfg, error_r)) return false;
    dir = evidence_dir(cfg, key);
    if (::mkdir(dir.c_str(), 02770) == 0) {
        // Whoever makes it (root's CLI or Exim), both must write in it: the
        // group comes from the setgid root, the mode must not depend on umask.
        if (::chmod(dir.c_str(), 02770) != 0) return error_r = errno_text(dir), false;
    } else if (errno != EEXIST) {
        return error_r = errno_text(dir), false;
    }
    return true;
}

namespace {
// Samples older than any window that could still act on them (a spam window,
// an automatic suspension) are no evidence of the next incident, and private
// mail is not kept longer than needed: they free their slot.
void drop_stale_samples(const Config& cfg, std::string_view key, int64_t now) {
    const int64_t max_age = std::max(cfg.spam_window, cfg.limits.suspend_for);
    for (const Sample& s : kept_samples(cfg, key, SIZE_MAX))
        if (s.kept < now - max_age) ::unlink(s.file.c_str());
}
}  // namespace

int keep_sample(const Config& cfg, std::string_view key, std::string_view text, int64_t now,
                std::string& error_r) {
    if (cfg.evidence_samples <= 0) return 0;
    std::string dir;
    if (!ensure_evidence_dir(cfg, key, dir, error_r)) return -1;
    drop_stale_samples(cfg, key, now);
    std::string body(text.substr(0, kMaxSampleBytes));
    if (text.size() > kMaxSampleBytes)
        body += "\n[... cut by mailsuspend: " + std::to_string(text.size()) + " octets in all]\n";
    const std::string tmp = dir + "/tmp-" + std::to_string(::getpid()) + "-" + random_hex(4);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
    if (fd < 0) return error_r = errno_text(tmp), -1;
    ::fchmod(fd, 0660);
    const std::string head = std::to_string(now) + "\n";  // first line: when it was kept
    const bool ok = ::write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()) &&
                    ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size());
    ::close(fd);
    if (!ok) {
        error_r = errno_text(tmp);
        ::unlink(tmp.c_str());
        return -1;
    }
    // Slots sample-0 .. sample-(N-1), claimed with link(): exact bound under concurrency.
    int kept = 0;
    for (int64_t i = 0; i < cfg.evidence_samples; ++i) {
        const std::string slot = dir + "/" + kSamplePrefix + std::to_string(i);
        if (::link(tmp.c_str(), slot.c_str()) == 0) {
            kept = 1;
            break;
        }
        if (errno != EEXIST) {
            error_r = errno_text(slot);
            kept = -1;
            break;
        }
    }
    ::unlink(tmp.c_str());
    return kept;
}

std::vector<Sample> kept_samples(const Config& cfg, std::string_view key, std::size_t max) {
    const std::string dir = evidence_dir(cfg, key);
    std::vector<Sample> out;
    for (const auto& name : entries(dir)) {
        if (name.rfind(kSamplePrefix, 0) != 0) continue;
        Sample s;
        s.file = dir + "/" + name;
        std::string raw;
        if (!read_whole(s.file, raw)) continue;
        const auto nl = raw.find('\n');
        s.kept = std::strtoll(raw.substr(0, nl).c_str(), nullptr, 10);
        s.text = nl == std::string::npos ? "" : raw.substr(nl + 1);
        out.push_back(std::move(s));
    }
    std::stable_sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) { return a.kept < b.kept; });
    if (out.size() > max) out.resize(max);
    return out;
}

bool mark_notice_pending(const Config& cfg, std::string_view key, std::string_view source, std::string_view why,
                         int64_t now, std::string& error_r) {
    std::string dir;
    if (!ensure_evidence_dir(cfg, key, dir, error_r)) return false;
    std::string text = std::string(key) + "\n" + sanitise_line(source, 20) + "\n" +
                       sanitise_line(why, 300) + "\n" + std::to_string(now) + "\n";
    return write_atomically(dir, kPending, text, error_r);
}

namespace {

// Sends the notice claimed in file claim for the key directory dir.
bool send_claimed(const Config& cfg, const std::string& dir, const std::string& claim,
                  std::vector<std::string>& warnings) {
    std::string raw;
    if (!read_whole(claim, raw)) return warnings.push_back(errno_text(claim)), false;
    std::vector<std::string_view> lines = lines_of(raw);
    lines.resize(4);  // key, source, why, when: a short claim leaves the rest empty
    NoticeInput in;
    in.key = lines[0];
    in.source = lines[1];
    in.why = lines[2];
    in.when = std::strtoll(std::string(lines[3]).c_str(), nullptr, 10);
    std::string why_not;
    in.contact = abuse_contact(cfg, in.key, why_not);
    if (in.contact.empty()) {
        warnings.push_back("no AUP notice for " + in.key + ": " +
                           (why_not.empty() ? "no spam.abuse_contacts entry for its domain and no "
                                              "spam.default_abuse_contact"
                                            : why_not));
        ::unlink(claim.c_str());  // nobody to tell: retrying cannot help
        for (const Sample& s : kept_samples(cfg, in.key, SIZE_MAX)) ::unlink(s.file.c_str());
        return false;
    }
    in.samples = kept_samples(cfg, in.key, static_cast<std::size_t>(std::max<int64_t>(cfg.evidence_samples, 0)));
    const std::string message = build_notice(in);
    if (std::string e; !run_sendmail(cfg.sendmail_command, in.contact, message, e)) {
        warnings.push_back("AUP notice for " + in.key + " to " + in.contact + " not sent: " + e);
        // Put it back for the next sweep, unless a newer one arrived meanwhile.
        if (::link(claim.c_str(), (dir + "/" + kPending).c_str()) != 0 && errno != EEXIST)
            warnings.push_back(errno_text(dir + "/" + kPending));
        ::unlink(claim.c_str());
        return false;
    }
    for (const auto& s : in.samples) ::unlink(s.file.c_str());  // the next incident starts clean
    ::unlink(claim.c_str());
    return true;
}

}  // namespace

int send_pending_notices(const Config& cfg, std::string_view key, std::vector<std::string>& warnings) {
    std::vector<std::string> dirs;
    if (!key.empty()) dirs.push_back(evidence_dir(cfg, key));
    else
        for (const auto& name : entries(evidence_root(cfg))) dirs.push_back(evidence_root(cfg) + "/" + name);
    int sent = 0;
    for (const auto& dir : dirs) {
        const std::string pending = dir + "/" + kPending;
        const std::string claim = dir + "/notice-sending-" + std::to_string(::getpid());
        if (::rename(pending.c_str(), claim.c_str()) != 0) continue;  // none, or another process has it
        if (send_claimed(cfg, dir, claim, warnings)) ++sent;
    }
    return sent;
}

// ---- notices --------------------------------------------------------------

std::string header_text(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s) {
        if (out.size() >= max) break;
        const auto u = static_cast<unsigned char>(c);
        out += (u >= 0x20 && u < 0x7F) ? c : '?';
    }
    return out;
}

bool header_safe_address(std::string_view a) {
    if (a.size() < 3 || a.size() > 254) return false;
    const auto at = a.find('@');
    if (at == 0 || at == std::string_view::npos || at + 1 >= a.size() || a.find('@', at + 1) != std::string_view::npos)
        return false;
    const std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) return false;
    for (char c : local) {
        const auto u = static_cast<unsigned char>(c);
        if (!(std::isalnum(u) || std::strchr("!#$%&'*+-/=?^_`{|}~.", c)) || u >= 0x80) return false;
    }
    if (domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string_view::npos) return false;
    for (char c : domain) {
        const auto u = static_cast<unsigned char>(c);
        if (!(std::isalnum(u) || c == '-' || c == '.') || u >= 0x80) return false;
    }
    return true;
}

std::string abuse_contact(const Config& cfg, std::string_view key, std::string& error_r) {
    const auto at = key.rfind('@');
    std::string domain = ascii_lowered(at == std::string_view::npos ? key : key.substr(at + 1));
    std::string contact;
    for (const auto& [d, c] : cfg.abuse_contacts) {
        std::string want = ascii_lowered(d);
        if (!want.empty() && want.back() == '.') want.pop_back();
        if (!want.empty() && want.front() == '@') want.erase(0, 1);
        if (want == domain) {
            contact = c;
            break;
        }
    }
    if (contact.empty()) contact = cfg.default_abuse_contact;
    if (contact.empty()) return {};
    if (!header_safe_address(contact)) {
        error_r = "abuse contact '" + sanitise_line(contact, 80) + "' is not a plain address (user@example.com)";
        return {};
    }
    return contact;
}

std::string rfc5322_date(int64_t epoch) {
    static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t t = static_cast<std::time_t>(epoch);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

namespace {

std::string evidence_text(const NoticeInput& in) {
    if (in.samples.empty()) return "No sample messages were kept for this suspension.\n";
    std::string out;
    for (std::size_t i = 0; i < in.samples.size(); ++i) {
        out += "===== Sample " + std::to_string(i + 1) + " of " + std::to_string(in.samples.size()) +
               " (kept " + format_time(in.samples[i].kept) + ") =====\n";
        out += in.samples[i].text;
        if (out.empty() || out.back() != '\n') out += '\n';
        out += '\n';
    }
    return out;
}

std::string notice_body(const NoticeInput& in) {
    const std::string key = sanitise_line(in.key, 320);
    const bool spam = in.source == "spam";
    std::string b;
    b += "Acceptable Use Policy notice\n\n";
    b += "Sending mail from the mailbox " + key + " has been suspended automatically on " +
         format_time(in.when) + ".\n\n";
    b += "Cause: " + std::string(spam ? "recipients reported its mail as spam" : "it sent more mail than the limits allow") +
         ": " + sanitise_line(in.why, 300) + ".\n\n";
    b += "The user can still log in, read and receive mail; only sending (SMTP and webmail) is refused.\n";
    b += "The mailbox cannot be deleted while the suspension lasts.\n\n";
    b += std::to_string(in.samples.size()) + " sample message(s) are attached in evidence.txt.\n";
    b += "If they show spam the user did not send knowingly, the password is probably compromised:\n";
    b += "change it and have the user's devices checked for malware before lifting the suspension.\n\n";
    b += "To lift it:  mailsuspend unsuspend " + key + " --service send\n";
    return b;
}

}  // namespace

std::string build_notice(const NoticeInput& in) {
    const std::string boundary = in.boundary.empty() ? "=_mailsuspend_" + random_hex(12) : in.boundary;
    const std::string key = header_text(in.key, 320);
    const std::string label = in.source == "spam" ? "spam reports" : "sending limits";
    std::string m;
    m += "To: " + header_text(in.contact, 254) + "\n";
    m += "Subject: AUP notice: sending suspended for " + key + " (" + label + ")\n";
    m += "Date: " + rfc5322_date(in.when) + "\n";
    m += "Auto-Submitted: auto-generated\n";
    m += "X-Mailsuspend-Notice: " + header_text(in.source, 20) + "; " + key + "\n";
    m += "MIME-Version: 1.0\n";
    m += "Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\n";
    m += "\nThis is a message in MIME format.\n\n";
    m += "--" + boundary + "\n";
    m += "Content-Type: text/plain; charset=utf-8\n";
    m += "Content-Transfer-Encoding: 8bit\n\n";
    m += notice_body(in);
    m += "\n--" + boundary + "\n";
    // base64: a sample can hold anything (bare CRs, long lines, a line that
    // looks like our boundary); encoded, it cannot break the structure.
    m += "Content-Type: text/plain; charset=utf-8; name=\"evidence.txt\"\n";
    m += "Content-Disposition: attachment; filename=\"evidence.txt\"\n";
    m += "Content-Transfer-Encoding: base64\n\n";
    m += base64_mime(evidence_text(in));
    m += "\n--" + boundary + "--\n";
    return m;
}

bool run_sendmail(const std::string& command, const std::string& contact, const std::string& message,
                  std::string& error_r) {
    auto args = command_words(command, {{"{address}", contact}});
    if (args.empty()) return error_r = "spam.sendmail_command is empty", false;
    return run_program(std::move(args), error_r, message);
}

}  // namespace mailsuspend
