#include "notify_webhook.hpp"

#include <curl/curl.h>
#include <dlfcn.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "signing.hpp"

namespace mailsuspend::cli {
namespace {

constexpr std::size_t kMinSecretBytes = 16;
constexpr long kConnectTimeoutS = 10;
constexpr long kTimeoutS = 30;

// The receiver's answer is not read: only its status counts.
size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// libcurl, loaded by `notify` when it starts, not linked: libcurl pulls in
// libidn2, GnuTLS and more at load time, and every other command of the CLI
// must start without them (the core loads libidn2 itself, on first use).
struct Curl {
    decltype(&curl_global_init) global_init = nullptr;
    decltype(&curl_easy_init) easy_init = nullptr;
    decltype(&curl_easy_reset) easy_reset = nullptr;
    decltype(&curl_easy_setopt) easy_setopt = nullptr;
    decltype(&curl_easy_perform) easy_perform = nullptr;
    decltype(&curl_easy_getinfo) easy_getinfo = nullptr;
    decltype(&curl_easy_strerror) easy_strerror = nullptr;
    decltype(&curl_easy_cleanup) easy_cleanup = nullptr;
    decltype(&curl_slist_append) slist_append = nullptr;
    decltype(&curl_slist_free_all) slist_free_all = nullptr;
    std::string load_error;

    static const Curl& get() {
        static const Curl library;  // once per process, never closed
        return library;
    }
    bool loaded() const { return load_error.empty(); }

private:
    static constexpr const char* kSoname = "libcurl.so.4";

    template <typename F>
    void bind(void* dl, F& f, const char* name) {
        f = reinterpret_cast<F>(::dlsym(dl, name));
        if (!f && load_error.empty()) load_error = std::string(kSoname) + " lacks " + name;
    }

    Curl() {
        void* dl = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            load_error = std::string(kSoname) + " cannot be loaded (" + ::dlerror() + "; apt-get install libcurl4)";
            return;
        }
        bind(dl, global_init, "curl_global_init");
        bind(dl, easy_init, "curl_easy_init");
        bind(dl, easy_reset, "curl_easy_reset");
        bind(dl, easy_setopt, "curl_easy_setopt");
        bind(dl, easy_perform, "curl_easy_perform");
        bind(dl, easy_getinfo, "curl_easy_getinfo");
        bind(dl, easy_strerror, "curl_easy_strerror");
        bind(dl, easy_cleanup, "curl_easy_cleanup");
        bind(dl, slist_append, "curl_slist_append");
        bind(dl, slist_free_all, "curl_slist_free_all");
    }
};

}  // namespace

std::string webhook_signature(std::string_view secret, std::string_view body) {
    return "sha256=" + hmac_sha256_hex(secret, body);
}

bool load_webhook_secret(const std::string& path, std::string& secret, std::string& error_r) {
    if (sodium_init() < 0) return error_r = "libsodium cannot start", false;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return error_r = path + ": cannot read the webhook secret", false;
    if (st.st_uid != 0 && st.st_uid != ::geteuid())
        return error_r = path + ": the webhook secret must belong to root (chown root " + path + ")", false;
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        return error_r = path + ": the webhook secret must be readable by root only (chmod 0600 " + path + ")", false;
    std::ifstream in(path, std::ios::binary);
    secret.assign(std::istreambuf_iterator<char>(in), {});
    if (!in.good() && !in.eof()) return error_r = path + ": cannot read the webhook secret", false;
    if (!secret.empty() && secret.back() == '\n') secret.pop_back();
    if (secret.size() < kMinSecretBytes)
        return error_r = path + ": the webhook secret has " + std::to_string(secret.size()) +
                         " bytes; it needs at least 16 (openssl rand -hex 32 > " + path + ")",
               false;
    return true;
}

bool load_curl(std::string& error_r) {
    const Curl& curl = Curl::get();
    if (!curl.loaded()) return error_r = curl.load_error, false;
    if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return error_r = "libcurl cannot start", false;
    return true;
}

Webhook::Webhook(std::string url, std::string secret) : url_(std::move(url)), secret_(std::move(secret)) {
    if (Curl::get().loaded()) curl_ = Curl::get().easy_init();
}

Webhook::~Webhook() {
    if (curl_) Curl::get().easy_cleanup(static_cast<CURL*>(curl_));
}

bool Webhook::post(const std::string& body, std::string& error_r) {
    const Curl& curl = Curl::get();
    CURL* c = static_cast<CURL*>(curl_);
    if (!c) return error_r = "libcurl cannot start", false;
    curl.easy_reset(c);  // the options go; the connection stays for the next POST
    struct curl_slist* headers = nullptr;
    headers = curl.slist_append(headers, "Content-Type: application/json");
    headers = curl.slist_append(headers, ("X-Mailsuspend-Signature: " + webhook_signature(secret_, body)).c_str());
    headers = curl.slist_append(headers, "Expect:");  // no 100-continue round trip
    curl.easy_setopt(c, CURLOPT_URL, url_.c_str());
    curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl.easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl.easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl.easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl.easy_setopt(c, CURLOPT_USERAGENT, "mailsuspend-notify");
    curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, kConnectTimeoutS);
    curl.easy_setopt(c, CURLOPT_TIMEOUT, kTimeoutS);
    curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    const CURLcode rc = curl.easy_perform(c);
    curl.slist_free_all(headers);
    if (rc != CURLE_OK) return error_r = url_ + ": " + curl.easy_strerror(rc), false;
    long status = 0;
    curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) return error_r = url_ + ": HTTP " + std::to_string(status), false;
    return true;
}

}  // namespace mailsuspend::cli
