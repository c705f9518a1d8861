// A store writer that misbehaves on purpose, for the fault tests
// (tests/faults/test_faults.py).  It links the core like the CLI does.
//
//   fault_writer CONFIG hold
//       Takes the writer lock (StoreWriter::open), prints "locked", and
//       waits to be killed: a writer that dies while holding its lock.
//   fault_writer CONFIG die-mid-write KEY
//       Takes the writer lock, marks the store dirty and leaves KEY's slot
//       in the middle of a seqlock write (odd sequence), prints "locked",
//       and waits to be killed: exactly what a writer SIGKILLed inside
//       write_slot() leaves behind.
//   fault_writer CONFIG raw-suspend KEY SERVICE REASON
//       Suspends SERVICE of KEY with REASON as given (CR/LF, control
//       characters...), through StoreWriter::commit, bypassing the CLI's
//       validation: what a buggy panel linking the core could store.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "config.hpp"
#include "model.hpp"
#include "store.hpp"
#include "store_layout.hpp"

namespace ms = mailsuspend;
namespace layout = mailsuspend::layout;

namespace {

int usage() {
    std::fprintf(stderr, "usage: fault_writer CONFIG hold | die-mid-write KEY | "
                         "raw-suspend KEY SERVICE REASON\n");
    return 2;
}

[[noreturn]] void announce_and_wait() {
    std::printf("locked\n");
    std::fflush(stdout);
    for (;;) ::pause();
}

// Finds KEY's slot as the readers do (linear probing from its home slot)
// and leaves it with an odd seqlock sequence, the store marked dirty.
bool break_slot(const std::string& dir, const std::string& key) {
    const std::string path = dir + "/store";
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    struct stat st{};
    if (fd < 0 || ::fstat(fd, &st) != 0) return false;
    void* p = ::mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return false;
    auto* base = static_cast<unsigned char*>(p);
    auto* header = reinterpret_cast<layout::Header*>(base);
    auto* slots = reinterpret_cast<layout::Slot*>(base + header->slots_offset);
    const uint64_t fp = layout::hash_key(key.data(), key.size());
    uint64_t i = layout::slot_index(fp, header->slot_count);
    for (uint64_t n = 0; n < header->slot_count; ++n) {
        layout::Slot& s = slots[i];
        const uint64_t w = s.word0.load();
        if (layout::w0_state(w) == layout::kEmpty) return false;
        if (layout::w0_state(w) == layout::kUsed && s.fingerprint.load() == fp) {
            header->dirty.store(1);
            const uint64_t seq = layout::w0_seq(w);
            s.word0.store(((seq + 1) << 32) | (w & 0xFFFFFFFFULL));  // odd: mid-write
            return ::msync(base, st.st_size, MS_SYNC) == 0;
        }
        if (++i == header->slot_count) i = 0;
    }
    return false;
}

int raw_suspend(ms::StoreWriter& w, const std::string& key, const std::string& service,
                const std::string& reason) {
    const auto svc = ms::parse_service(service);
    if (!svc) return usage();
    ms::Change c;
    if (!w.get(key, c.record)) return 1;
    ms::ServiceState& st = c.record.at(*svc);
    st.suspended = true;
    st.since = std::time(nullptr);
    st.reason = reason;
    std::vector<ms::Change> changes{c};
    std::string error;
    if (w.commit(changes, error) == 0) {
        std::fprintf(stderr, "commit: %s\n", error.c_str());
        return 1;
    }
    std::printf("stored\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    std::string error;
    const auto cfg = ms::load_config(argv[1], error);
    if (!cfg) {
        std::fprintf(stderr, "config: %s\n", error.c_str());
        return 1;
    }
    const std::string cmd = argv[2];
    auto writer = ms::StoreWriter::open(*cfg, false, error);
    if (!writer) {
        std::fprintf(stderr, "open: %s\n", error.c_str());
        return 1;
    }
    if (cmd == "hold" && argc == 3) announce_and_wait();
    if (cmd == "die-mid-write" && argc == 4) {
        if (!break_slot(cfg->store_path, argv[3])) {
            std::fprintf(stderr, "no slot for %s\n", argv[3]);
            return 1;
        }
        announce_and_wait();
    }
    if (cmd == "raw-suspend" && argc == 6) return raw_suspend(*writer, argv[3], argv[4], argv[5]);
    return usage();
}
