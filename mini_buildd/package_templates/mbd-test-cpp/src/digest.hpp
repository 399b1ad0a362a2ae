// mbd-test-cpp: SHA-256 digests as hex strings (via OpenSSL's EVP interface).
#ifndef MBD_TEST_CPP_DIGEST_HPP
#define MBD_TEST_CPP_DIGEST_HPP

#include <string>

namespace mbdtest {

// Hex-encoded SHA-256 digest of data; throws std::runtime_error on failure.
std::string sha256_hex(const std::string& data);

}

#endif
