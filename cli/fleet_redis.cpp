#include "fleet_redis.hpp"

#include <sys/stat.h>

#include <hiredis/hiredis.h>

#include <fstream>

namespace mailsuspend::cli {
namespace {

constexpr int kTimeoutMs = 5000;  // connect, and each command (longer than any BLOCK we send)

Reply convert(const redisReply* r) {
    Reply out;
    switch (r->type) {
    case REDIS_REPLY_INTEGER: out.type = Reply::Type::integer; out.integer = r->integer; break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: out.type = Reply::Type::string; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = Reply::Type::error; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ARRAY:
        out.type = Reply::Type::array;
        for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
        break;
    default: break;  // nil
    }
    return out;
}

redisContext* open_context(const std::string& address, std::string& error_r) {
    const timeval tv{kTimeoutMs / 1000, (kTimeoutMs % 1000) * 1000};
    redisContext* c = nullptr;
    if (address.rfind("unix:", 0) == 0) {
        c = redisConnectUnixWithTimeout(address.substr(5).c_str(), tv);
    } else {
        std::string host;
        int port = 0;
        if (!parse_host_port(address, host, port, error_r)) return nullptr;
        c = redisConnectWithTimeout(host.c_str(), port, tv);
    }
    if (!c || c->err) {
        error_r = address + ": " + (c ? c->errstr : "cannot allocate a connection");
        if (c) redisFree(c);
        return nullptr;
    }
    redisSetTimeout(c, tv);
    return c;
}

// Sends AUTH with fleet.password_file's credentials (auth: "AUTH", then
// them); a server without a password says so, which is no error here.
void offer_credentials(redisContext* c, const std::vector<std::string>& auth) {
    if (auth.size() < 2) return;
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : auth) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    if (void* r = redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()))
        freeReplyObject(r);
}

// The master's "host:port" from the first sentinel that knows it.  A
// sentinel with requirepass gets the same credentials as Redis.
bool ask_sentinels(const FleetConfig& f, const std::vector<std::string>& auth, std::string& master,
                   std::string& error_r) {
    error_r = "no sentinel answered";
    for (const auto& s : f.sentinels) {
        std::string why;
        redisContext* c = open_context(s, why);
        if (!c) {
            error_r = why;
            continue;
        }
        offer_credentials(c, auth);
        auto* r = static_cast<redisReply*>(
            redisCommand(c, "SENTINEL get-master-addr-by-name %s", f.master_name.c_str()));
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            const std::string host(r->element[0]->str, r->element[0]->len);
            master = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                     std::string(r->element[1]->str, r->element[1]->len);
        } else {
            error_r = s + ": does not know the master " + f.master_name +
                      (r && r->type == REDIS_REPLY_ERROR ? " (" + std::string(r->str, r->len) + ")" : "");
        }
        if (r) freeReplyObject(r);
        redisFree(c);
        if (!master.empty()) return true;
    }
    return false;
}

// password_file: one line (the password), or two (an ACL user, then its password).
// Like the fleet key, it must not be readable by others (root-only, 0600).
bool read_password(const std::string& path, std::vector<std::string>& auth, std::string& error_r) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH))
        return error_r = path + ": the Redis password is readable by everyone (chmod 0600)", false;
    std::ifstream in(path);
    if (!in) return error_r = path + ": cannot read the Redis password", false;
    std::string line;
    while (auth.size() < 2 && std::getline(in, line))
        if (!line.empty()) auth.push_back(line);
    if (auth.empty()) return error_r = path + ": no password in it", false;
    return true;
}

// Error replies of a server that is no longer (or not yet) the master.
bool demoted_error(const std::string& error) {
    for (const char* code : {"READONLY", "MASTERDOWN", "UNBLOCKED"})
        if (error.rfind(code, 0) == 0) return true;
    return false;
}

bool is_master(Redis& redis, std::string& error_r) {
    Reply role;
    if (!redis.run({"ROLE"}, role, error_r)) return error_r = redis.address() + ": ROLE: " + error_r, false;
    if (!role.elements.empty() && role.elements[0].str == "master") return true;
    const std::string is = role.elements.empty() ? "unknown" : role.elements[0].str;
    return error_r = redis.address() + " is not the master (ROLE: " + is + ")", false;
}

}  // namespace

const Reply* Reply::field(const std::string& name) const {
    for (std::size_t i = 0; i + 1 < elements.size(); i += 2)
        if (elements[i].str == name) return &elements[i + 1];
    return nullptr;
}

std::unique_ptr<Redis> Redis::connect(const FleetConfig& f, std::string& error_r) {
    std::vector<std::string> auth{"AUTH"};
    if (!f.password_file.empty() && !read_password(f.password_file, auth, error_r)) return nullptr;
    std::string address = f.redis;
    if (address.empty() && !ask_sentinels(f, auth, address, error_r)) return nullptr;
    redisContext* c = open_context(address, error_r);
    if (!c) return nullptr;
    std::unique_ptr<Redis> redis(new Redis(c, address));
    if (!f.password_file.empty()) {
        Reply ignored;
        if (!redis->run(auth, ignored, error_r)) return error_r = address + ": AUTH: " + error_r, nullptr;
    }
    if (!is_master(*redis, error_r)) return nullptr;
    return redis;
}

Redis::~Redis() { redisFree(c_); }

bool Redis::broken() const { return c_->err != 0 || demoted_; }

bool Redis::append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    return redisAppendCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data()) == REDIS_OK;
}

bool Redis::reply(Reply& out, std::string& error_r) {
    void* got = nullptr;
    if (redisGetReply(c_, &got) != REDIS_OK || !got)
        return error_r = address_ + ": " + (c_->errstr[0] ? c_->errstr : "connection lost"), false;
    auto* r = static_cast<redisReply*>(got);
    out = convert(r);
    freeReplyObject(r);
    if (out.type != Reply::Type::error) return true;
    demoted_ = demoted_ || demoted_error(out.str);
    return error_r = out.str, false;
}

bool Redis::run(const std::vector<std::string>& args, Reply& out, std::string& error_r) {
    if (!append(args)) return error_r = address_ + ": " + (c_->errstr[0] ? c_->errstr : "out of memory"), false;
    return reply(out, error_r);
}

bool Redis::run_pipelined(const std::vector<std::vector<std::string>>& commands, std::string& error_r,
                          std::vector<Reply>* replies) {
    for (const auto& args : commands)
        if (!append(args)) return error_r = address_ + ": " + (c_->errstr[0] ? c_->errstr : "out of memory"), false;
    if (replies) replies->assign(commands.size(), Reply{});
    bool ok = true;
    for (std::size_t i = 0; i < commands.size(); ++i) {
        Reply ignored;
        std::string why;
        if (reply(replies ? (*replies)[i] : ignored, why)) continue;
        if (ok) error_r = why;
        ok = false;
        if (c_->err) return false;  // nothing more to read
    }
    return ok;
}

}  // namespace mailsuspend::cli
