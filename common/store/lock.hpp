// Helpers of the writer lock (<store.path>/lock, flock): internal to the store.
#pragma once

#include <cstdint>
#include <string>

namespace mailsuspend::store_file {

// CLOCK_MONOTONIC in milliseconds: the lock wait's clock.
int64_t monotonic_ms();

// Who holds the flock on fd, from /proc/locks ("1: FLOCK ADVISORY WRITE
// <pid> <maj>:<min>:<inode> 0 EOF"; waiters are marked "->").
std::string lock_holder(int fd);

}  // namespace mailsuspend::store_file
