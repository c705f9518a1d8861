// `mailsuspend batch` (JSON lines on stdin, one transaction), run in-process:
// cmd_batch from cli/commands.cpp, so the real batch_line() and Session code
// run, exactly as the command does.  The fuzz input is stdin.  The command
// line (CLI11) is left out: its argv would be the same for every input, and
// building it took a third of each execution.
//
// Each input starts from the same freshly initialised store (capacity 16, so
// growth runs too).  Checked beyond "no crash": the exit code is one of the
// documented ones (0..3), and after an accepted batch `check` finds the store
// consistent.
#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "config.hpp"
#include "fuzz_util.hpp"
#include "store.hpp"

namespace {

struct Files {
    std::string dir, config, store_dir;
    std::string store, journal;  // the pristine store after init
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

int run_cli(const std::string& config, int (*command)(const mailsuspend::cli::Options&),
            const std::string& stdin_text) {
    std::istringstream in(stdin_text);
    std::ostringstream out, err;
    auto* cin_buf = std::cin.rdbuf(in.rdbuf());
    auto* cout_buf = std::cout.rdbuf(out.rdbuf());
    auto* cerr_buf = std::cerr.rdbuf(err.rdbuf());
    std::cin.clear();
    mailsuspend::cli::Options options;
    options.config = config;
    const int rc = command(options);
    std::cin.rdbuf(cin_buf);
    std::cout.rdbuf(cout_buf);
    std::cerr.rdbuf(cerr_buf);
    std::cin.clear();
    if (rc < 0 || rc > 3) fuzz::violated("exit code outside 0..3", err.str());
    if (std::getenv("FUZZ_BATCH_VERBOSE")) std::fprintf(stderr, "rc=%d out=%s err=%s", rc, out.str().c_str(), err.str().c_str());
    return rc;
}

const Files& files() {
    static const Files f = [] {
        Files f;
        f.dir = fuzz::scratch_dir("batch");
        f.config = f.dir + "/mailsuspend.conf";
        f.store_dir = f.dir + "/store";
        const std::string conf =
            "store: { path = \"" + f.store_dir + "\"; capacity = 16; counter_capacity = 16;\n"
            "         audit_log = \"" + f.dir + "/audit.log\"; read_group = \"\"; write_group = \"\"; };\n"
            // {address} commands run for unsuspend receive / suspend send --fail-queued.
            "delivery: { flush_command = \"/bin/true -R {address}\";\n"
            "            fail_queued_command = \"/bin/true -S {address}\"; };\n"
            "spam: { sendmail_command = \"/bin/true\"; };\n";
        fuzz::write_file(f.config, conf.data(), conf.size());
        if (run_cli(f.config, mailsuspend::cli::cmd_init, "") != 0) fuzz::violated("mailsuspend init failed");
        f.store = slurp(f.store_dir + "/store");
        f.journal = slurp(f.store_dir + "/journal");
        return f;
    }();
    return f;
}

void check_store(const Files& f) {
    std::string error;
    auto cfg = mailsuspend::load_config(f.config, error);
    if (!cfg) fuzz::violated("config", error);
    auto writer = mailsuspend::StoreWriter::open(*cfg, false, error);
    if (!writer) fuzz::violated("cannot open the store after a batch", error);
    std::vector<std::string> report;
    if (!writer->check(report)) fuzz::violated("store inconsistent after a batch", report.front());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Files& f = files();
    ::unlink((f.store_dir + "/store.new").c_str());
    fuzz::write_file(f.store_dir + "/store", f.store.data(), f.store.size());
    fuzz::write_file(f.store_dir + "/journal", f.journal.data(), f.journal.size());
    fuzz::write_file(f.dir + "/audit.log", "", 0);
    const int rc = run_cli(f.config, mailsuspend::cli::cmd_batch, std::string(reinterpret_cast<const char*>(data), size));
    if (rc == 0) check_store(f);
    return 0;
}
