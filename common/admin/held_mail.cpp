#include "held_mail.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <initializer_list>
#include <cstdlib>

#include "address.hpp"
#include "files.hpp"
#include "model.hpp"
#include "spawn.hpp"
#include "text.hpp"

namespace mailsuspend {
namespace {

constexpr std::size_t kMaxHeaderFile = 4 << 20;  // larger: not a header file we read
constexpr std::size_t kMaxSubject = 200;

// Reads the lines of a spool header file one by one.
class Lines {
public:
    explicit Lines(std::string_view text) : rest_(text) {}
    bool next(std::string_view& line) {
        const auto end = rest_.find('\n');
        if (end == std::string_view::npos) return false;
        line = rest_.substr(0, end);
        rest_.remove_prefix(end + 1);
        return true;
    }
    // n octets and the newline after them (an ACL variable's value).
    bool skip_value(std::size_t n) {
        if (rest_.size() < n + 1 || rest_[n] != '\n') return false;
        rest_.remove_prefix(n + 1);
        return true;
    }
    std::string_view rest() const { return rest_; }
private:
    std::string_view rest_;
};

// The tree of addresses already delivered: "XX" when empty, else a node line
// "<left Y/N><right Y/N> address" followed by its left, then right, subtree.
bool read_delivered(Lines& lines, std::vector<std::string>& out, int depth = 0) {
    std::string_view line;
    if (depth > 64 || !lines.next(line) || line.size() < 2) return false;
    if (depth == 0 && line == "XX") return true;
    if (line.size() < 4 || line[2] != ' ') return false;
    out.emplace_back(line.substr(3));
    return (line[0] != 'Y' || read_delivered(lines, out, depth + 1)) &&
           (line[1] != 'Y' || read_delivered(lines, out, depth + 1));
}

// A recipient line: the address, then optional " errors_to len,pno#flags" data.
std::string recipient_of(std::string_view line) {
    if (const auto hash = line.rfind('#'); hash != std::string_view::npos && line.find(' ') != std::string_view::npos)
        line = line.substr(0, line.find(' '));
    return std::string(line);
}

// A header's value on one line: a folded value's line breaks dropped (the
// next line starts with its blank), tabs made spaces.
std::string unfolded(std::string_view value) {
    std::string out;
    for (char c : value)
        if (c != '\r' && c != '\n') out += c == '\t' ? ' ' : c;
    return out;
}

// The headers: "<length><flag> <text>", length counting the text with its
// newline(s); flag '*' marks a header Exim deleted.  Returns their total
// size (what exim -bp counts) and the Subject.
bool read_headers(std::string_view rest, uint64_t& size, std::string& subject) {
    while (!rest.empty()) {
        std::size_t digits = 0;
        while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
        if (digits == 0 || digits + 2 > rest.size()) return false;
        const std::size_t length = std::strtoul(std::string(rest.substr(0, digits)).c_str(), nullptr, 10);
        const char flag = rest[digits];
        rest.remove_prefix(digits + 2);
        if (length > rest.size()) return false;
        const std::string_view text = rest.substr(0, length);
        rest.remove_prefix(length);
        if (flag == '*') continue;
        size += length;
        if (subject.empty() && text.size() > 8 && ascii_lowered(text.substr(0, 8)) == "subject:")
            subject = sanitise_line(trim_blanks(unfolded(text.substr(8))), kMaxSubject);
    }
    return true;
}


// The -H files under the spool's input directory, split or not.
void header_files(const std::string& dir, int depth, std::vector<std::string>& out) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        if (name.size() > 2 && name.compare(name.size() - 2, 2, "-H") == 0) out.push_back(dir + "/" + name);
        else if (depth == 0 && name.size() == 1) header_files(dir + "/" + name, 1, out);
    }
    ::closedir(d);
}

// cfg.exim_command's words followed by options; false when it is empty.
bool exim_args(const Config& cfg, std::initializer_list<std::string> options, std::vector<std::string>& args,
               std::string& error_r) {
    args = command_words(cfg.exim_command, {});
    if (args.empty()) return error_r = "delivery.exim_command is empty", false;
    args.insert(args.end(), options);
    return true;
}

bool spool_directory(const Config& cfg, std::string& dir, std::string& error_r) {
    std::vector<std::string> args;
    if (!exim_args(cfg, {"-n", "-bP", "spool_directory"}, args, error_r)) return false;
    if (!run_program(args, error_r, {}, &dir)) return false;
    dir = std::string(trim_blanks(dir.substr(0, dir.find('\n'))));
    if (dir.empty() || dir.front() != '/') return error_r = "Exim named no spool directory", false;
    return true;
}

// Whether identity (what the module held the message for) belongs to key.
bool held_for_key(const std::string& identity, const std::string& key, const AddressRules& rules) {
    std::string error;
    const std::string of = normalise(identity, rules, error);
    if (of.empty()) return false;
    return key.front() == '@' ? domain_key_of(of) == key : of == key;
}

}  // namespace

bool parse_spool_header(std::string_view text, uint64_t body_size, HeldMessage& m) {
    m = {};
    Lines lines(text);
    std::string_view line;
    if (!lines.next(line) || line.size() < 3 || line.substr(line.size() - 2) != "-H") return false;
    m.id = std::string(line.substr(0, line.size() - 2));
    std::string_view sender, times;
    if (!lines.next(line) || !lines.next(sender) || !lines.next(times)) return false;
    if (sender.size() < 2 || sender.front() != '<' || sender.back() != '>') return false;
    m.sender = std::string(sender.substr(1, sender.size() - 2));
    m.received = std::strtoll(std::string(times).c_str(), nullptr, 10);
    // Options, "-name value", until the tree of delivered addresses.  An
    // ACL variable ("-aclc NAME LENGTH", "-aclm ...") has its value on the
    // lines after, LENGTH octets and a newline.
    Lines before_tree = lines;
    while (lines.next(line) && !line.empty() && line.front() == '-') {
        if (line.substr(0, 12) == "-local_scan ") {
            const std::string_view data = line.substr(12);
            if (data.substr(0, kHeldMark.size()) == kHeldMark) m.held_for = std::string(data.substr(kHeldMark.size()));
        } else if (line.substr(0, 6) == "-aclc " || line.substr(0, 6) == "-aclm ") {
            const auto space = line.rfind(' ');
            if (!lines.skip_value(std::strtoul(std::string(line.substr(space + 1)).c_str(), nullptr, 10)))
                return false;
        }
        before_tree = lines;
    }
    if (m.held_for.empty()) return false;
    lines = before_tree;
    std::vector<std::string> delivered;
    if (!read_delivered(lines, delivered) || !lines.next(line)) return false;
    const long count = std::strtol(std::string(line).c_str(), nullptr, 10);
    for (long i = 0; i < count; ++i) {
        if (!lines.next(line)) return false;
        std::string rcpt = recipient_of(line);
        if (std::find(delivered.begin(), delivered.end(), rcpt) == delivered.end())
            m.recipients.push_back(std::move(rcpt));
    }
    if (!lines.next(line) || !line.empty()) return false;
    m.size = 0;
    if (!read_headers(lines.rest(), m.size, m.subject)) return false;
    m.size += body_size;
    return true;
}

bool find_held_mail(const Config& cfg, const std::string& key, std::vector<HeldMessage>& out,
                    std::string& error_r) {
    std::string spool;
    if (!spool_directory(cfg, spool, error_r)) return false;
    struct stat st {};
    if (::stat((spool + "/input").c_str(), &st) != 0) return error_r = spool + "/input: cannot be read", false;
    std::vector<std::string> files;
    header_files(spool + "/input", 0, files);
    for (const auto& path : files) {
        std::string text;
        HeldMessage m;
        // A message delivered or removed meanwhile has no files any more.
        if (!read_small_file(path, text, {.limit = kMaxHeaderFile})) continue;
        // The -D file starts with its own name line ("<id>-D\n"), which is no part of the message.
        const std::string stem = path.substr(0, path.size() - 2);
        const std::size_t name_line = stem.size() - stem.rfind('/') - 1 + 3;
        struct stat data {};
        const uint64_t body = ::stat((stem + "-D").c_str(), &data) == 0 && static_cast<uint64_t>(data.st_size) > name_line
                                  ? static_cast<uint64_t>(data.st_size) - name_line
                                  : 0;
        if (!parse_spool_header(text, body, m) || !held_for_key(m.held_for, key, cfg.address)) continue;
        out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(), [](const HeldMessage& a, const HeldMessage& b) {
        return a.received != b.received ? a.received < b.received : a.id < b.id;
    });
    return true;
}

bool exim_on_messages(const Config& cfg, const char* option, const std::vector<std::string>& ids,
                      std::string& error_r) {
    if (ids.empty()) return true;
    std::vector<std::string> args;
    if (!exim_args(cfg, {option}, args, error_r)) return false;
    args.insert(args.end(), ids.begin(), ids.end());
    return run_program(args, error_r);
}

bool deliver_held_mail(const Config& cfg, const std::string& key, std::string& error_r) {
    std::vector<HeldMessage> held;
    if (!find_held_mail(cfg, key, held, error_r)) return false;
    std::vector<std::string> ids;
    for (const auto& m : held) ids.push_back(m.id);
    return exim_on_messages(cfg, "-M", ids, error_r);
}

}  // namespace mailsuspend
