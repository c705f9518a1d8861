// The agent's connection to Redis (hiredis, synchronous).  Only the CLI links
// hiredis: the Dovecot and Exim modules never talk to the network.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config.hpp"

struct redisContext;
struct redisReply;

namespace mailsuspend::cli {

// A reply, owned: nil, integer, string (status, error, bulk) or array.
struct Reply {
    enum class Type { nil, integer, string, error, array } type = Type::nil;
    long long integer = 0;
    std::string str;
    std::vector<Reply> elements;
    // For a flat array of field/value pairs (HGETALL, XINFO): the value of field, or nullptr.
    const Reply* field(const std::string& name) const;
};

class Redis {
public:
    // Connects to fleet.redis, or to the master fleet.sentinels name for
    // fleet.master_name, authenticates with fleet.password_file and checks
    // with ROLE that it reached a master (a sentinel may still name the old
    // one for a moment after a failover).
    static std::unique_ptr<Redis> connect(const FleetConfig& f, std::string& error_r);
    ~Redis();
    Redis(const Redis&) = delete;
    Redis& operator=(const Redis&) = delete;
    // Runs one command; false with the error (connection lost, or an error
    // reply) in error_r.  After a connection error the object is unusable.
    bool run(const std::vector<std::string>& args, Reply& out, std::string& error_r);
    // Runs commands pipelined: all are sent, then every reply is read, one
    // round trip for the lot.  False with the first error (an error reply,
    // or the connection's) in error_r.  replies: each command's reply, in order.
    bool run_pipelined(const std::vector<std::vector<std::string>>& commands, std::string& error_r,
                       std::vector<Reply>* replies = nullptr);
    const std::string& address() const { return address_; }
    // The connection failed, or the server stopped being the master
    // (READONLY, MASTERDOWN, UNBLOCKED: a failover): connect again.  Other
    // error replies leave it usable.
    bool broken() const;

private:
    Redis(redisContext* c, std::string address) : c_(c), address_(std::move(address)) {}
    bool append(const std::vector<std::string>& args);  // queues a command (redisAppendCommandArgv)
    bool reply(Reply& out, std::string& error_r);        // reads the next reply
    redisContext* c_;
    std::string address_;
    bool demoted_ = false;
};

}  // namespace mailsuspend::cli
