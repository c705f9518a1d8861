// What `mailsuspend doctor` needs from processes: running doveconf, exim4
// and systemctl without a shell (posix_spawn, pipes, a deadline), and running
// a check inside a child that has dropped to another identity (a server's
// user, primary group and supplementary groups) to see what it can open.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace mailsuspend::cli {

struct RunResult {
    int status = -1;     // exit status; 128+N when killed by signal N
    std::string out, err;
    std::string error;   // could not run it at all, or it timed out
    bool ok() const { return error.empty() && status == 0; }
    std::string what() const;  // error, or the status and stderr as one line
};

// Runs argv[0] (searched in PATH) with input on stdin; gives up after timeout_s.
RunResult run_program(const std::vector<std::string>& argv, const std::string& input = {},
                      int timeout_s = 30);

// A process identity as the kernel sees it.
struct Identity {
    std::string who;   // "Dovecot's auth process", ...
    std::string user;  // login name
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary
    std::string describe() const;  // "user dovecot, group dovecot, supplementary groups mailsuspend"
};

// Runs body in a forked child running as id (setgroups, setgid, setuid);
// returns what body returned, with body's error (or what else went wrong) in error_r.
bool run_as(const Identity& id, const std::function<bool(std::string& error_r)>& body, std::string& error_r);

std::string group_name(gid_t gid);

}  // namespace mailsuspend::cli
