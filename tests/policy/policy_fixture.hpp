// Shared by the policy tests: a temporary store with a config of small
// limits, a fake sendmail that files each message it is given, and C-API
// handles on it.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "config.hpp"
#include "mailsuspend/mailsuspend.h"
#include "store.hpp"

namespace policy_test {

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_file(const std::string& path, const std::string& text, mode_t mode = 0644) {
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << text;
    }
    ::chmod(path.c_str(), mode);
}

inline int64_t wall_now() { return static_cast<int64_t>(std::time(nullptr)); }

// Polls cond every 50 ms for up to limit; true as soon as it holds.  (Used
// to wait for real expiry times; asserts behaviour, never durations.)
inline bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return cond();
}

class PolicyFixture : public ::testing::Test {
protected:
    std::string dir, config_path, mail_dir;

    // Groups of the config after store/delivery; override per test.
    virtual std::string extra_config() const {
        return "limits: { messages_per_day = 5; recipients_per_message = 3; offdomain_recipients_per_day = 8;\n"
               "          offdomain_recipients_per_hour_per_ip = 6; suspend_for = \"1h\"; escalate_after = 3; };\n";
    }
    std::string spam_config() const {
        return "spam: { threshold = 2; window = \"24h\"; evidence_samples = 3;\n"
               "        default_abuse_contact = \"abuse@provider.test\";\n"
               "        abuse_contacts = ( { domain = \"example.com\"; contact = \"abuse@example.com\"; } );\n"
               "        sendmail_command = \"" + dir + "/sendmail -t -oi\"; };\n";
    }

    void SetUp() override {
        char templ[] = "/tmp/ms-policy-XXXXXX";
        ASSERT_NE(::mkdtemp(templ), nullptr);
        dir = templ;
        mail_dir = dir + "/mail";
        std::filesystem::create_directory(mail_dir);
        // The fake MTA: files the message it reads and its arguments.
        write_file(dir + "/sendmail",
                   "#!/bin/sh\nn=$(ls " + mail_dir + " | wc -l)\ncat > " + mail_dir + "/msg-$n.eml\n"
                   "echo \"$@\" > " + dir + "/sendmail-args\n",
                   0755);
        config_path = dir + "/mailsuspend.conf";
        write_file(config_path, "store: { path = \"" + dir + "/store\"; capacity = 64; counter_capacity = 64;\n"
                                "         read_group = \"\"; write_group = \"\"; audit_log = \"" + dir + "/audit.log\"; };\n"
                                "delivery: { flush_command = \"\"; fail_queued_command = \"\"; };\n"
                                "webmail: { hosts = [ \"127.0.0.2\" ]; };\n" +
                                    extra_config() + spam_config());
        ASSERT_EQ(run_cli({"init"}), 0) << cli_output;
    }

    void TearDown() override {
        for (auto* h : handles) mailsuspend_close(&h);
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    mailsuspend::Config config() const {
        std::string error;
        auto cfg = mailsuspend::load_config(config_path, error);
        EXPECT_TRUE(cfg) << error;
        return cfg ? *cfg : mailsuspend::Config{};
    }

    struct mailsuspend_handle* open_handle() {
        const char* error = nullptr;
        struct mailsuspend_handle* h = mailsuspend_open(config_path.c_str(), nullptr, nullptr, &error);
        EXPECT_EQ(error, nullptr) << error;
        handles.push_back(h);
        return h;
    }

    // The stored record of key (empty when absent).
    mailsuspend::TargetRecord record(const std::string& key) {
        std::string error;
        auto reader = mailsuspend::StoreReader::open(dir + "/store", error);
        EXPECT_TRUE(reader) << error;
        mailsuspend::TargetRecord r;
        if (reader) reader->read(key, r);
        return r;
    }

    std::vector<std::string> mails() const {
        std::vector<std::string> out;
        for (int i = 0; std::filesystem::exists(mail_dir + "/msg-" + std::to_string(i) + ".eml"); ++i)
            out.push_back(read_file(mail_dir + "/msg-" + std::to_string(i) + ".eml"));
        return out;
    }

    // Runs the built CLI with --config; stdout+stderr in cli_output.
    int run_cli(const std::vector<std::string>& args, const std::string& stdin_file = "") {
        std::string cmd = std::string(MAILSUSPEND_CLI) + " --config '" + config_path + "'";
        for (const auto& a : args) cmd += " '" + a + "'";
        cmd += stdin_file.empty() ? " </dev/null" : " <'" + stdin_file + "'";
        cmd += " 2>&1";
        cli_output.clear();
        FILE* p = ::popen(cmd.c_str(), "r");
        if (!p) return -1;
        char buf[4096];
        while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) cli_output.append(buf, n);
        const int status = ::pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    std::string cli_output;
    std::vector<struct mailsuspend_handle*> handles;
};

}  // namespace policy_test
