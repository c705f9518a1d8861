// Small files read and written whole (common/rules/files.hpp).
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "files.hpp"
#include "test_util.hpp"

namespace mailsuspend::test {
namespace {

TEST(Files, ReadsAndWritesWhole) {
    TempDir dir;
    const std::string path = dir.path() + "/f";
    const std::string text("line one\n\0binary\nlast", 21);
    ASSERT_TRUE(write_small_file(path, text, 0640));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0077 & ~0040, 0u) << "no more than the mode asked";
    std::string back;
    struct stat read_st {};
    ASSERT_TRUE(read_small_file(path, back, {.stat_r = &read_st}));
    EXPECT_EQ(back, text);
    EXPECT_EQ(read_st.st_ino, st.st_ino);
    ASSERT_TRUE(write_small_file(path, "short"));  // truncates
    ASSERT_TRUE(read_small_file(path, back));
    EXPECT_EQ(back, "short");
}

TEST(Files, ReplacesWholeWithTheModeWhateverTheUmaskAndLeavesNoTemporary) {
    TempDir dir;
    const std::string path = dir.path() + "/f";
    ASSERT_TRUE(write_small_file(path, "old"));
    const mode_t umask_before = ::umask(0077);
    const bool replaced = replace_small_file(path, "new text", 0644);
    ::umask(umask_before);
    ASSERT_TRUE(replaced);
    std::string back;
    ASSERT_TRUE(read_small_file(path, back));
    EXPECT_EQ(back, "new text");
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0644u);
    std::vector<std::string> names;  // no temporary left beside it
    if (DIR* d = ::opendir(dir.path().c_str())) {
        while (const dirent* e = ::readdir(d))
            if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.emplace_back(e->d_name);
        ::closedir(d);
    }
    EXPECT_EQ(names, std::vector<std::string>{"f"});
    // Into a directory that does not exist: refused, with errno.
    errno = 0;
    EXPECT_FALSE(replace_small_file(dir.path() + "/missing/f", "x", 0644));
    EXPECT_EQ(errno, ENOENT);
}

TEST(Files, RefusesWhatIsNoSmallRegularFile) {
    TempDir dir;
    const std::string path = dir.path() + "/f", link = dir.path() + "/link";
    std::string out = "untouched";
    EXPECT_FALSE(read_small_file(dir.path() + "/missing", out));
    EXPECT_EQ(errno, ENOENT);
    EXPECT_FALSE(read_small_file(dir.path(), out));
    EXPECT_EQ(errno, EINVAL) << "a directory";
    ASSERT_TRUE(write_small_file(path, std::string(100, 'x')));
    EXPECT_FALSE(read_small_file(path, out, {.limit = 99}));
    EXPECT_EQ(errno, EFBIG);
    EXPECT_TRUE(read_small_file(path, out, {.limit = 100}));
    ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
    EXPECT_TRUE(read_small_file(link, out));
    EXPECT_FALSE(read_small_file(link, out, {.follow_links = false}));
    EXPECT_EQ(errno, ELOOP);
    EXPECT_FALSE(write_small_file(dir.path() + "/no/such/dir/f", "x"));
    EXPECT_EQ(errno, ENOENT);
}

TEST(Files, SplitsLinesAndWords) {
    using V = std::vector<std::string_view>;
    EXPECT_EQ(lines_of(""), V{});
    EXPECT_EQ(lines_of("a\nb\n"), (V{"a", "b"}));
    EXPECT_EQ(lines_of("a\n\nb"), (V{"a", "", "b"}));
    EXPECT_EQ(lines_of("\n"), V{""});
    using W = std::vector<std::string>;
    EXPECT_EQ(blank_separated_words(""), W{});
    EXPECT_EQ(blank_separated_words(" \t\r\n"), W{});
    EXPECT_EQ(blank_separated_words("/usr/sbin/exim4 -Rrff  {address_regex}\n"),
              (W{"/usr/sbin/exim4", "-Rrff", "{address_regex}"}));
    EXPECT_EQ(blank_separated_words("a\vb\fc"), (W{"a", "b", "c"}));
}

}  // namespace
}  // namespace mailsuspend::test
